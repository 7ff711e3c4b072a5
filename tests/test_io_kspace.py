"""k-space reader: the real Siemens twix phantom scan, and the same real k-space written as BART
cfl/hdr, fastMRI-style HDF5 and .npy; plus the project's FFT convention."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from scorerecon.modalities.io import kspace as ks
from scorerecon.modalities.io.store import open_store
from scorerecon.pipelines.cli import main
from scorerecon.pipelines.ingest import ingest

DATA = (Path(__file__).parents[1] / ".." / "shared" / "data").resolve()
TWIX = DATA / "mri" / "twix_gre_phantom_2coil.dat"


@pytest.fixture(scope="module")
def twix_kspace() -> np.ndarray:
    """The real phantom k-space as (coil, z, ky, kx), read directly with twixtools."""
    if not TWIX.exists():
        pytest.skip(f"shared data not available: {TWIX}")
    import twixtools

    image = twixtools.map_twix(twixtools.read_twix(str(TWIX), parse_pmu=False, verbose=False)[-1])["image"]
    image.flags["remove_os"] = False
    arr = np.asarray(image[:]).squeeze()  # (Lin, Cha, Col)
    return arr.transpose(1, 0, 2)[:, None].astype(np.complex64)


def test_fft_convention_roundtrip_and_centre() -> None:
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((3, 2, 16, 20)) + 1j * rng.standard_normal((3, 2, 16, 20))).astype(np.complex64)
    k = ks.image_to_kspace(x)
    np.testing.assert_allclose(ks.kspace_to_image(k), x, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(k), np.linalg.norm(x), rtol=1e-5)  # ortho: unitary
    const = np.ones((16, 20))
    kc = ks.image_to_kspace(const)
    assert np.unravel_index(np.abs(kc).argmax(), kc.shape) == (8, 10)  # DC at n // 2
    # a centred image point maps to flat k-space with zero phase (centred convention)
    delta = np.zeros((16, 20))
    delta[8, 10] = 1.0
    np.testing.assert_allclose(ks.image_to_kspace(delta), np.full((16, 20), 1 / np.sqrt(320)), atol=1e-12)


def test_twix_ingest(tmp_path: Path, twix_kspace: np.ndarray) -> None:
    out = ingest([TWIX], tmp_path / "twix.zarr")
    ds = open_store(out)
    k = ds["kspace"]
    assert k.dims == ("coil", "z", "ky", "kx")
    assert k.dtype == np.complex64 and k.shape == (2, 1, 160, 320)
    assert k.chunks == ((2,), (1,), (160,), (320,))
    values = k.values
    np.testing.assert_array_equal(values, twix_kspace)
    assert ds.attrs["kspace_centre"] == {"ky": 80, "kx": 160}
    assert np.unravel_index(np.abs(values[0, 0]).argmax(), (160, 320)) == (80, 160)  # DC at n // 2
    assert ds.attrs["readout_oversampling"] == 2.0
    assert ds.attrs["twix"]["base_resolution"] == 160 and ds.attrs["twix"]["fov_readout_mm"] == 200.0
    # with the convention the phantom lies inside the central half of the 2x oversampled readout
    energy = (np.abs(ks.kspace_to_image(values)) ** 2).sum(axis=(0, 1, 2))
    assert energy[80:240].sum() > 0.95 * energy.sum()


def test_bart_pair(tmp_path: Path, twix_kspace: np.ndarray) -> None:
    base = tmp_path / "gre"
    arr = twix_kspace.transpose(3, 2, 1, 0)  # (READ, PHS1, PHS2, COIL)
    (base.with_suffix(".hdr")).write_text("# Dimensions\n" + " ".join(map(str, arr.shape + (1,) * 12)) + "\n")
    np.asfortranarray(arr).T.tofile(base.with_suffix(".cfl"))  # Fortran order on disk
    ds = ks.read([base.with_suffix(".cfl")])["/"]
    np.testing.assert_array_equal(ds["kspace"].values, twix_kspace)
    assert ds.attrs["bart_dims"][:4] == [320, 160, 1, 2]
    out = ingest([base.with_suffix(".hdr")], tmp_path / "bart.zarr")
    np.testing.assert_array_equal(open_store(out)["kspace"].values, twix_kspace)


def test_fastmri_h5_multicoil_and_single_coil(tmp_path: Path, twix_kspace: np.ndarray) -> None:
    slices = np.concatenate([twix_kspace, twix_kspace * 0.5], axis=1).transpose(1, 0, 2, 3)  # (slices, coils, ...)
    rss = np.sqrt((np.abs(ks.kspace_to_image(slices)) ** 2).sum(axis=1)).astype(np.float32)
    path = tmp_path / "file1000.h5"
    with h5py.File(path, "w") as f:
        f["kspace"] = slices
        f["reconstruction_rss"] = rss
        f["ismrmrd_header"] = (b'<?xml version="1.0"?><ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD">'
                               b"<encoding><encodedSpace><matrixSize><x>320</x><y>160</y><z>1</z></matrixSize>"
                               b"<fieldOfView_mm><x>400</x><y>200</y><z>4</z></fieldOfView_mm></encodedSpace>"
                               b"</encoding></ismrmrdHeader>")
        f.attrs["acquisition"] = "GRE"
    out = ingest([path], tmp_path / "fm.zarr")
    ds = open_store(out)
    np.testing.assert_array_equal(ds["kspace"].values, slices.transpose(1, 0, 2, 3))
    assert ds["kspace"].chunks[1] == (1, 1)
    assert ds.attrs["h5_acquisition"] == "GRE"
    assert ds.attrs["encodedSpace_matrixSize"] == {"x": 320.0, "y": 160.0, "z": 1.0}
    ref = open_store(out, "reference")
    np.testing.assert_array_equal(ref["image"].values, rss)
    single = tmp_path / "single.h5"
    with h5py.File(single, "w") as f:
        f["kspace"] = slices[:, 0]
    ds1 = ks.read([single])["/"]
    assert ds1["kspace"].shape == (1, 2, 160, 320)
    np.testing.assert_array_equal(ds1["kspace"].values[0], slices[:, 0])


@pytest.mark.parametrize("ndim", [2, 3, 4])
def test_npy_shapes(tmp_path: Path, twix_kspace: np.ndarray, ndim: int, capsys: pytest.CaptureFixture[str]) -> None:
    arr = {2: twix_kspace[0, 0], 3: twix_kspace[:, 0], 4: twix_kspace}[ndim].astype(np.complex128)
    path = tmp_path / f"k{ndim}.npy"
    np.save(path, arr)
    assert main(["ingest", str(path), "-o", str(tmp_path / "k.zarr"), "-q"]) == 0
    capsys.readouterr()
    ds = open_store(tmp_path / "k.zarr")
    expected = arr.reshape((1,) * (4 - ndim) + arr.shape) if ndim != 3 else arr[:, None]
    assert ds["kspace"].dtype == np.complex64
    np.testing.assert_array_equal(ds["kspace"].values, expected.astype(np.complex64))


def _write_bart(base: Path, arr: np.ndarray) -> Path:
    """Write ``arr`` (BART dims order READ, PHS1, PHS2, COIL) as a BART pair, Fortran order on disk."""
    base.with_suffix(".hdr").write_text("# Dimensions\n" + " ".join(map(str, arr.shape + (1,) * 12)) + "\n")
    np.asfortranarray(arr).T.tofile(base.with_suffix(".cfl"))
    return base.with_suffix(".cfl")


def test_bart_axes_rule() -> None:
    assert ks.bart_axes([1, 180, 230, 8]) == (1, 2, 0)  # kx PHS1, ky PHS2, z READ: one plane
    assert ks.bart_axes([256, 200, 1, 8]) == (0, 1, 2)  # 2-D: kx READ, ky PHS1
    assert ks.bart_axes([256, 1, 200, 8]) == (0, 2, 1)  # kx READ, ky PHS2
    assert ks.bart_axes([256, 200, 64, 8]) == (0, 1, 2)  # 3-D: z is PHS2, as stored
    assert ks.bart_axes([1, 1, 64, 1]) == (0, 2, 1)  # one line: ky PHS2, kx READ (size 1)


def test_bart_plane_with_transformed_readout_is_one_slice(tmp_path: Path, twix_kspace: np.ndarray) -> None:
    """BART's in-vivo layout ``1 PHS1 PHS2 COIL`` (readout transformed, one position taken) is one
    k-space plane: ``(coil, 1, PHS2, PHS1)``, not PHS2 one-line slices."""
    plane = twix_kspace[:, 0]  # (coil 2, 160, 320) real k-space
    arr = plane.transpose(2, 1, 0)[None]  # (READ 1, PHS1 320, PHS2 160, COIL 2)
    cfl = _write_bart(tmp_path / "invivo", arr)
    ds = ks.read([cfl])["/"]
    assert ds["kspace"].shape == (2, 1, 160, 320)
    np.testing.assert_array_equal(ds["kspace"].values, twix_kspace)
    assert ds.attrs["bart_axes"] == {"kx": "PHS1", "ky": "PHS2", "z": "READ"}
    # a 3-D array keeps READ, PHS1 in plane and PHS2 as z (one chunk per z)
    vol = np.stack([twix_kspace[:, 0], 0.5 * twix_kspace[:, 0], 0.25 * twix_kspace[:, 0]], axis=1)  # (C, z, ky, kx)
    ds3 = ks.read([_write_bart(tmp_path / "vol", vol.transpose(3, 2, 1, 0))])["/"]
    np.testing.assert_array_equal(ds3["kspace"].values, vol)
    assert ds3["kspace"].chunks[1] == (1, 1, 1) and ds3.attrs["bart_axes"]["z"] == "PHS2"
