"""Malformed medical inputs through the CLI: each must fail with exit 2 and exactly one stderr line
``scorerecon: error: <file>: <problem>``, no traceback, no output store and no partial directory
next to it, and the sources byte-for-byte unchanged."""

from __future__ import annotations

import re
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from scorerecon.modalities.io.store import sha256_file
from scorerecon.pipelines.cli import main

try:  # the series writer lives with the DICOM tests (tests/ may or may not be a package)
    from test_io_dicom import head_ct_slices, write_series
except ImportError:  # pragma: no cover
    from tests.test_io_dicom import head_ct_slices, write_series

DATA = (Path(__file__).parents[1] / ".." / "shared" / "data").resolve()
COLIN = DATA / "mri" / "colin27_t1.nii.gz"


def _hashes(sources: list[Path]) -> dict[Path, str]:
    files = [f for s in sources for f in ([s] if s.is_file() else sorted(s.rglob("*")))]
    return {f: sha256_file(f) for f in files if f.is_file()}


def fails_cleanly(capsys: pytest.CaptureFixture[str], sources: list[Path], out: Path, names: list[str],
                  problem: str, *extra: str) -> str:
    """Run ``scorerecon ingest`` and check the one-line failure contract; returns the line."""
    before = _hashes(sources)
    capsys.readouterr()
    rc = main(["ingest", *map(str, sources), "-o", str(out), "-q", *extra])
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert rc == 2, captured
    assert len(lines) == 1, captured.err
    line = lines[0]
    assert line.startswith("scorerecon: error:"), line
    assert "Traceback" not in captured.err + captured.out
    for name in names:
        assert name in line, line
    assert re.search(problem, line, re.IGNORECASE), line
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}")]
    assert _hashes(sources) == before
    return line


@pytest.fixture
def ct_series(tmp_path: Path) -> dict:
    return write_series(tmp_path / "series", head_ct_slices(6))


def _by_instance(files: list[Path]) -> dict[int, Path]:
    return {int(pydicom.dcmread(f, stop_before_pixels=True).InstanceNumber): f for f in files}


# ---------------------------------------------------------------------------------------- DICOM
def test_truncated_dicom_in_series(tmp_path: Path, ct_series: dict, capsys: pytest.CaptureFixture[str]) -> None:
    victim = ct_series["files"][2]
    victim.write_bytes(victim.read_bytes()[:-1000])
    fails_cleanly(capsys, [tmp_path / "series"], tmp_path / "o.zarr", [victim.name], "truncated")


def test_truncated_single_dicom_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "ct_cut.dcm"
    src.write_bytes(Path(get_testdata_file("CT_small.dcm")).read_bytes()[:5000])
    fails_cleanly(capsys, [src], tmp_path / "o.zarr", ["ct_cut.dcm"], "truncated")


def test_two_series_without_series_option(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    hu = head_ct_slices(6)
    a = write_series(tmp_path / "mixed", hu[:3], prefix="a")
    b = write_series(tmp_path / "mixed", hu[3:], prefix="b")
    fails_cleanly(capsys, [tmp_path / "mixed"], tmp_path / "o.zarr", ["mixed", a["series_uid"], b["series_uid"]],
                  "2 DICOM series.*--series")
    fails_cleanly(capsys, [tmp_path / "mixed"], tmp_path / "o.zarr", ["mixed", "1.2.3.4"], "not found",
                  "--series", "1.2.3.4")


def test_missing_slice(tmp_path: Path, ct_series: dict, capsys: pytest.CaptureFixture[str]) -> None:
    files = _by_instance(ct_series["files"])
    files[3].unlink()
    fails_cleanly(capsys, [tmp_path / "series"], tmp_path / "o.zarr", [files[4].name], "missing slice")


def test_inconsistent_spacing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    z = [0.0, 1.5, 3.0, 4.2, 5.7, 7.2]
    written = write_series(tmp_path / "series", head_ct_slices(6),
                           positions=[np.array([-60.0, -70.0, v]) for v in z])
    files = _by_instance(written["files"])
    fails_cleanly(capsys, [tmp_path / "series"], tmp_path / "o.zarr", [files[4].name], "inconsistent slice spacing")


def test_inconsistent_orientation(tmp_path: Path, ct_series: dict, capsys: pytest.CaptureFixture[str]) -> None:
    victim = _by_instance(ct_series["files"])[5]
    ds = pydicom.dcmread(victim)
    ds.ImageOrientationPatient = [0.9848078, 0.1736482, 0.0, -0.1736482, 0.9848078, 0.0]  # 10 degrees about z
    ds.save_as(victim)
    fails_cleanly(capsys, [tmp_path / "series"], tmp_path / "o.zarr", [victim.name],
                  "inconsistent ImageOrientationPatient")


def test_inconsistent_rows(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    hu = head_ct_slices(4)
    written = write_series(tmp_path / "series", hu)
    victim = _by_instance(written["files"])[2]
    ds = pydicom.dcmread(victim)
    ds.Rows, ds.Columns = 128, 128
    ds.PixelData = (hu[1, :128, :128] + 1024).astype(np.uint16).tobytes()
    ds.save_as(victim)
    fails_cleanly(capsys, [tmp_path / "series"], tmp_path / "o.zarr", [victim.name], "inconsistent Rows")


def test_missing_pixel_data(tmp_path: Path, ct_series: dict, capsys: pytest.CaptureFixture[str]) -> None:
    victim = _by_instance(ct_series["files"])[2]
    ds = pydicom.dcmread(victim)
    del ds.PixelData
    ds.save_as(victim)
    fails_cleanly(capsys, [tmp_path / "series"], tmp_path / "o.zarr", [victim.name], "missing pixel data")


def test_not_a_dicom_with_dcm_extension(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "notes.dcm"
    src.write_text("this is a radiology report, not an image\n" * 20)
    fails_cleanly(capsys, [src], tmp_path / "o.zarr", ["notes.dcm"], "not a DICOM file")
    # inside a folder of a valid series it is still an error (its name claims DICOM)
    write_series(tmp_path / "series", head_ct_slices(3))
    (tmp_path / "series" / "bad.dcm").write_bytes(b"\x00" * 128 + b"DICX" + b"junk" * 50)
    fails_cleanly(capsys, [tmp_path / "series"], tmp_path / "o.zarr", ["bad.dcm"], "not a DICOM file")


# ---------------------------------------------------------------------------------------- NIfTI
def _colin_slab(tmp_path: Path, name: str = "vol.nii") -> Path:
    if not COLIN.exists():
        pytest.skip(f"shared data not available: {COLIN}")
    data = np.asanyarray(nib.load(COLIN).dataobj)[:, :, 80:96]
    path = tmp_path / name
    nib.save(nib.Nifti1Image(data, nib.load(COLIN).affine), path)
    return path


def _patch_header(path: Path, **fields: object) -> None:
    header = nib.load(path).header.copy()
    for key, value in fields.items():
        header[key] = value
    with open(path, "r+b") as handle:
        header.write_to(handle)


def test_nifti_nan_in_affine(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = _colin_slab(tmp_path, "nan_affine.nii")
    srow = nib.load(src).header["srow_x"].copy()
    srow[0] = np.nan
    _patch_header(src, srow_x=srow)
    fails_cleanly(capsys, [src], tmp_path / "o.zarr", ["nan_affine.nii"], "NaN")


def test_nifti_nan_in_pixdim(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = _colin_slab(tmp_path, "nan_pixdim.nii")
    pixdim = nib.load(src).header["pixdim"].copy()
    pixdim[2] = np.nan
    _patch_header(src, pixdim=pixdim)
    fails_cleanly(capsys, [src], tmp_path / "o.zarr", ["nan_pixdim.nii"], "NaN")


def test_nifti_zero_size_dim(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = _colin_slab(tmp_path, "zero_dim.nii")
    dim = nib.load(src).header["dim"].copy()
    dim[3] = 0
    _patch_header(src, dim=dim)
    fails_cleanly(capsys, [src], tmp_path / "o.zarr", ["zero_dim.nii"], "zero-size")


def test_nifti_truncated(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = _colin_slab(tmp_path, "cut.nii")
    src.write_bytes(src.read_bytes()[:-5000])
    fails_cleanly(capsys, [src], tmp_path / "o.zarr", ["cut.nii"], "truncated")
    gz = _colin_slab(tmp_path, "cut.nii.gz")
    gz.write_bytes(gz.read_bytes()[: gz.stat().st_size // 2])
    fails_cleanly(capsys, [gz], tmp_path / "o.zarr", ["cut.nii.gz"], "truncated")


def test_not_a_nifti(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "fake.nii"
    src.write_bytes(b"\x01" * 400)
    fails_cleanly(capsys, [src], tmp_path / "o.zarr", ["fake.nii"], "NIfTI")


# -------------------------------------------------------------------------------------- k-space
def test_kspace_wrong_shape_npy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "k5d.npy"
    np.save(src, np.zeros((2, 2, 2, 8, 8), np.complex64))
    fails_cleanly(capsys, [src], tmp_path / "o.zarr", ["k5d.npy"], "2-4 dims")


def test_kspace_wrong_shape_h5(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "k2d.h5"
    with h5py.File(src, "w") as f:
        f["kspace"] = np.zeros((8, 8), np.complex64)
    fails_cleanly(capsys, [src], tmp_path / "o.zarr", ["k2d.h5"], "slices, coils, ky, kx")


def test_kspace_real_valued_npy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "real.npy"
    np.save(src, np.ones((4, 16, 16), np.float32))
    fails_cleanly(capsys, [src], tmp_path / "o.zarr", ["real.npy"], "complex")


def test_kspace_bart_size_mismatch(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "k.hdr").write_text("# Dimensions\n16 16 1 2 1\n")
    np.zeros(16 * 16 * 2 - 3, np.complex64).tofile(tmp_path / "k.cfl")
    fails_cleanly(capsys, [tmp_path / "k.cfl"], tmp_path / "o.zarr", ["k.cfl"], "does not match dims")


def test_twix_garbage(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "meas.dat"
    src.write_bytes(b"\x00" * 4096)
    fails_cleanly(capsys, [src], tmp_path / "o.zarr", ["meas.dat"], "twix")


def test_nifti_gz_corrupt_stream_found_while_writing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Header and gzip trailer are intact, the deflate stream is not: the error surfaces while the
    store is being written, and the partial store must still be removed."""
    gz = _colin_slab(tmp_path, "corrupt.nii.gz")
    raw = bytearray(gz.read_bytes())
    middle = len(raw) // 2
    raw[middle:middle + 64] = bytes(64)
    gz.write_bytes(bytes(raw))
    fails_cleanly(capsys, [gz], tmp_path / "o.zarr", ["corrupt.nii.gz"], "cannot read|corrupt")
