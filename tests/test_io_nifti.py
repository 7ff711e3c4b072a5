"""NIfTI reader: real volumes (Colin27 T1, head CT, nibabel's 4D EPI) ingested into a Zarr store and
compared exactly with nibabel."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from scorerecon.modalities.io import nifti
from scorerecon.modalities.io.store import open_store, sha256_file
from scorerecon.pipelines.cli import main
from scorerecon.pipelines.ingest import ingest

DATA = (Path(__file__).parents[1] / ".." / "shared" / "data").resolve()
COLIN = DATA / "mri" / "colin27_t1.nii.gz"
HEAD_CT = DATA / "ct" / "head_ct_hu.nii.gz"
NIB_DATA = Path(nib.__file__).parent / "tests" / "data"


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"test data not available: {path}")
    return path


def zyx(arr: np.ndarray) -> np.ndarray:
    """nibabel's (i, j, k[, t]) order -> the store's (z, y, x) / (t, z, y, x)."""
    return arr.T if arr.ndim == 3 else arr.transpose(3, 2, 1, 0)


def test_colin27_roundtrip_exact(tmp_path: Path) -> None:
    src = need(COLIN)
    before = sha256_file(src)
    out = ingest([src], tmp_path / "colin.zarr")
    ds = open_store(out)
    img = nib.load(src)
    assert ds["image"].dims == ("z", "y", "x")
    assert ds["image"].dtype == np.uint8  # no scaling: stored integer dtype kept
    np.testing.assert_array_equal(ds["image"].values, zyx(np.asanyarray(img.dataobj)))
    np.testing.assert_allclose(np.array(ds.attrs["affine"]), img.affine, atol=1e-6)
    assert ds.attrs["affine_source"].startswith("sform")
    assert ds.attrs["spacing"] == [1.0, 1.0, 1.0]
    np.testing.assert_allclose(ds["z"].values, np.arange(181) * 1.0)
    assert ds.attrs["source_files"][0]["sha256"] == before == sha256_file(src)


def test_head_ct_streams_in_bounded_slabs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = need(HEAD_CT)
    monkeypatch.setattr(nifti, "CHUNK_BYTES", 256 * 256 * 2 * 10)  # 10 slices per chunk
    ds = nifti.read([src], series="ignored")["/"]
    assert ds["image"].chunks[0] == (10,) * 10 + (8,)
    out = ingest([src], tmp_path / "ct.zarr")
    stored = open_store(out)
    img = nib.load(src)
    assert stored["image"].dtype == np.int16
    assert stored["image"].chunks[0][0] == 10
    np.testing.assert_array_equal(stored["image"].values, zyx(np.asanyarray(img.dataobj)))
    np.testing.assert_allclose(stored.attrs["spacing"], [0.95703119, 0.95703119, 1.5], atol=1e-6)
    np.testing.assert_allclose(np.array(stored.attrs["affine"]), img.affine, atol=1e-6)


def test_4d_example(tmp_path: Path) -> None:
    src = need(NIB_DATA / "example4d.nii.gz")
    out = ingest([src], tmp_path / "epi.zarr")
    ds = open_store(out)
    img = nib.load(src)
    assert ds["image"].dims == ("t", "z", "y", "x")
    assert ds["image"].shape == (2, 24, 96, 128)
    np.testing.assert_array_equal(ds["image"].values, zyx(np.asanyarray(img.dataobj)))
    np.testing.assert_allclose(np.array(ds.attrs["affine"]), img.affine, atol=1e-6)
    np.testing.assert_allclose(ds["t"].values, [0.0, float(img.header["pixdim"][4])])


def test_big_endian_uncompressed() -> None:
    src = need(NIB_DATA / "anatomical.nii")
    ds = nifti.read([src])["/"]
    img = nib.load(src)
    assert ds["image"].dtype == np.dtype("int16") and ds["image"].dtype.isnative
    np.testing.assert_array_equal(ds["image"].values, zyx(np.asanyarray(img.dataobj)))


def test_scaling_gives_float32_and_qform_only(tmp_path: Path) -> None:
    src = need(COLIN)
    raw = np.asanyarray(nib.load(src).dataobj)[:, :, 80:90]
    affine = np.array([[0.0, -1.2, 0, 10], [1.1, 0, 0, -20], [0, 0, 1.3, 5], [0, 0, 0, 1]])
    path = tmp_path / "scaled.nii"
    nib.save(nib.Nifti1Image(raw, affine), path)
    # nibabel recomputes scaling and the sform on save: patch the header on disk instead
    header = nib.load(path).header.copy()
    header.set_qform(affine, code=1)
    header["sform_code"] = 0
    header["scl_slope"], header["scl_inter"] = 0.5, 10.0
    with open(path, "r+b") as handle:
        header.write_to(handle)
    ds = nifti.read([path])["/"]
    assert ds["image"].dtype == np.float32
    np.testing.assert_array_equal(ds["image"].values, zyx(raw.astype(np.float32) * 0.5 + 10.0))
    assert ds.attrs["affine_source"].startswith("qform")
    np.testing.assert_allclose(np.array(ds.attrs["affine"]), affine, atol=1e-6)
    np.testing.assert_allclose(ds.attrs["spacing"], [1.1, 1.2, 1.3], atol=1e-6)


def test_cli_ingest_nifti(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = need(COLIN)
    assert main(["ingest", str(src), "-o", str(tmp_path / "c.zarr"), "-q"]) == 0
    assert "wrote" in capsys.readouterr().out
    assert open_store(tmp_path / "c.zarr")["image"].shape == (181, 217, 181)


def _gunzip(src: Path, dst: Path) -> Path:
    import gzip
    import shutil

    with gzip.open(src, "rb") as fin, open(dst, "wb") as fout:
        shutil.copyfileobj(fin, fout)
    return dst


def test_uncompressed_file_is_read_once_slab_by_slab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A .nii is read in slabs whose bytes also give its sha256 (no second pass over the file)."""
    from scorerecon.modalities.io import digests

    src = _gunzip(need(HEAD_CT), tmp_path / "head_ct.nii")
    monkeypatch.setattr(nifti, "CHUNK_BYTES", 256 * 256 * 2 * 10)
    # room for 4 slabs ahead of the hash: enough only if dask reads the slabs about in file order
    monkeypatch.setattr(digests, "MAX_PENDING_BYTES", 4 * nifti.CHUNK_BYTES)
    unhashed: list[int] = []
    original = digests.StreamedDigest.hexdigest

    def spy(self: digests.StreamedDigest) -> str:
        unhashed.append(self.size - self.hashed_bytes)
        return original(self)

    monkeypatch.setattr(digests.StreamedDigest, "hexdigest", spy)
    out = ingest([src], tmp_path / "ct.zarr")
    ds = open_store(out)
    np.testing.assert_array_equal(ds["image"].values, zyx(np.asanyarray(nib.load(src).dataobj)))
    assert ds["image"].chunks[0] == (10,) * 10 + (8,)
    assert ds.attrs["source_files"][0]["sha256"] == sha256_file(src)
    assert unhashed == [0]


def test_4d_uncompressed(tmp_path: Path) -> None:
    src = _gunzip(need(NIB_DATA / "example4d.nii.gz"), tmp_path / "epi.nii")
    ds = open_store(ingest([src], tmp_path / "epi.zarr"))
    assert ds["image"].dims == ("t", "z", "y", "x") and ds["image"].chunks[0] == (1, 1)
    np.testing.assert_array_equal(ds["image"].values, zyx(np.asanyarray(nib.load(src).dataobj)))
    assert ds.attrs["source_files"][0]["sha256"] == sha256_file(src)


@pytest.mark.parametrize("compression", ["none", "zstd"])
def test_compression_choices_round_trip(tmp_path: Path, compression: str) -> None:
    import zarr

    src = need(COLIN)
    assert main(["ingest", str(src), "-o", str(tmp_path / "c.zarr"), "-q", "--compression", compression]) == 0
    codecs = [c["name"] for c in zarr.open_array(tmp_path / "c.zarr" / "image", mode="r").metadata.to_dict()["codecs"]]
    assert codecs[-1] == "crc32c" and (("blosc" in codecs) == (compression == "zstd"))
    np.testing.assert_array_equal(open_store(tmp_path / "c.zarr")["image"].values,
                                  zyx(np.asanyarray(nib.load(src).dataobj)))
