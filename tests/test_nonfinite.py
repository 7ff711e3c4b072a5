"""``--nonfinite refuse|mask`` (issue 19): NaN/Inf input values are refused in one line by default, or filled,
counted per slice in the record and marked (NaN) in the output on request.

Real stores made here (a small CT volume ingested from NIfTI, a sinogram store, single-coil k-space
from an ``.npy``), the shipped priors at 2 NFE: the checks are of behaviour, never of quality.
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
import xarray as xr

from scorerecon.modalities.io.store import open_store, write_store
from scorerecon.pipelines.cli import main
from scorerecon.pipelines.errors import InputError
from scorerecon.pipelines.nonfinite import Screen

BAD = ((2, 10, 10, np.nan), (2, 12, 20, np.inf), (3, 15, 15, -np.inf))  # (z, y, x, value)
RECON = ["reconstruct", "--task", "ct", "--views", "8", "--slices", "2,3", "--nfe", "2", "--threads", "1", "--quiet"]


@pytest.fixture(scope="module")
def ct_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 6 x 32 x 32 HU volume (a water square in air) with 3 non-finite voxels in slices 2 and 3."""
    root = tmp_path_factory.mktemp("nonfinite")
    hu = np.full((6, 32, 32), -1000, np.float32)
    hu[:, 8:24, 8:24] = 40
    for z, y, x, value in BAD:
        hu[z, y, x] = value
    nib.save(nib.Nifti1Image(hu.T.copy(), np.diag([1.0, 1.0, 2.0, 1.0])), root / "ct.nii.gz")
    assert main(["ingest", str(root / "ct.nii.gz"), "-o", str(root / "ct.zarr"), "-q"]) == 0
    return root / "ct.zarr"


def _one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("scorerecon: error: "), err
    return err[0]


def _record(store: Path) -> dict:
    rec = open_store(store).attrs["reconstruction"]
    return json.loads(rec) if isinstance(rec, str) else rec


# ------------------------------------------------------------------------------------------ fill rules
def test_image_fill_is_the_slice_median_and_marks_the_voxels() -> None:
    values = np.arange(8 * 3 * 3, dtype=np.float32).reshape(8, 3, 3)
    values[7, 0, 0], values[7, 2, 2] = np.nan, np.inf
    screen = Screen("mask", "x.zarr")
    out = screen.load(xr.DataArray(values, dims=("z", "y", "x"), name="image"), [4, 7])
    finite = values[7][np.isfinite(values[7])]
    assert out[1, 0, 0] == out[1, 2, 2] == np.median(finite)
    np.testing.assert_array_equal(out[0], values[4])
    assert screen.counts == {4: 0, 7: 2} and set(screen.marks) == {7}
    rec = screen.record("NaN")
    assert rec["count"] == 2 and rec["per_slice"] == {"7": 2} and "median" in rec["fill"]


def test_a_slice_without_any_finite_voxel_is_refused() -> None:
    values = np.full((6, 4, 4), np.nan, np.float32)
    with pytest.raises(InputError, match="slice z=5 has no finite voxel"):
        Screen("mask", "x.zarr").load(xr.DataArray(values, dims=("z", "y", "x"), name="image"), [5])


def test_sinogram_fill_interpolates_along_the_detector() -> None:
    values = np.tile(np.arange(8, dtype=np.float32) * 2.0, (1, 3, 1))  # (z 1, angle 3, det 8): a ramp per view
    values[0, 1, 3], values[0, 2, 0] = np.nan, np.inf
    out = Screen("mask", "s.zarr").load(xr.DataArray(values, dims=("z", "angle", "det"), name="sinogram"), [0])
    assert out[0, 1, 3] == pytest.approx(6.0)  # between 4 and 8
    assert out[0, 2, 0] == pytest.approx(2.0)  # np.interp holds the nearest value beyond the edge
    values[0, 0, :] = np.nan
    with pytest.raises(InputError, match="view 0 of the sinogram has no finite sample"):
        Screen("mask", "s.zarr").load(xr.DataArray(values, dims=("z", "angle", "det"), name="sinogram"), [0])


def test_kspace_fill_is_zero_and_its_ky_line_leaves_the_mask() -> None:
    values = np.ones((2, 1, 6, 4), np.complex64)  # (coil, z, ky, kx)
    values[1, 0, 4, 2] = complex(np.nan, 0)
    screen = Screen("mask", "k.zarr")
    out = screen.load(xr.DataArray(values, dims=("coil", "z", "ky", "kx"), name="kspace"), [0])
    assert out[1, 0, 4, 2] == 0 and screen.dropped_lines == {4}
    mask = screen.drop_lines(torch.ones(6, 4))
    assert mask[4].sum() == 0 and mask.sum() == 20
    assert screen.record("-")["ky_lines_dropped"] == [4]


def test_refuse_is_the_default_and_names_the_flag() -> None:
    values = np.zeros((1, 2, 2), np.float32)
    values[0, 0, 0] = np.nan
    ds = xr.Dataset({"image": (("z", "y", "x"), values)})
    with pytest.raises(InputError, match=r"1 non-finite .*--nonfinite mask"):
        Screen("refuse", "x.zarr").load(ds["image"], [0])


# ------------------------------------------------------------------------------------------ reconstruct
def test_reconstruct_refuses_nan_voxels_by_default(ct_store, tmp_path, capsys) -> None:
    out = tmp_path / "rec.zarr"
    assert main([*RECON, "--input", str(ct_store), "-o", str(out)]) == 2
    line = _one_line_error(capsys)
    assert "ct.zarr" in line and "3 non-finite" in line and "--nonfinite mask" in line
    assert not out.exists() and not list(tmp_path.iterdir())


def test_reconstruct_masks_nan_voxels_on_request(ct_store, tmp_path) -> None:
    out = tmp_path / "rec.zarr"
    assert main([*RECON, "--input", str(ct_store), "-o", str(out), "--nonfinite", "mask"]) == 0
    image = open_store(out)["image"].values  # slices 2, 3 of the input
    marked = np.zeros(image.shape, bool)
    for z, y, x, _ in BAD:
        marked[z - 2, y, x] = True
    assert np.isnan(image[marked]).all()  # the filled voxels are not passed off as data
    assert np.isfinite(image[~marked]).all()  # and nothing else is lost
    record = _record(out)["nonfinite"]
    assert record["policy"] == "mask" and record["variable"] == "image"
    assert record["count"] == 3 and record["per_slice"] == {"2": 2, "3": 1}
    assert record["output_voxels_nan"] == 3
    assert json.loads(json.dumps(open_store(out).attrs["options"]))["nonfinite"] == "mask"


def test_reconstruct_marks_follow_downsample_and_crop(ct_store, tmp_path) -> None:
    out = tmp_path / "rec.zarr"
    assert main([*RECON, "--input", str(ct_store), "-o", str(out), "--nonfinite", "mask", "--downsample", "2",
                 "--crop", "20"]) == 0
    image = open_store(out)["image"].values
    assert image.shape == (2, 20, 20)
    # 2 x 2 block means (32 -> 16), then zero-padded to 20 (offset 2): voxel (y, x) lands at (y // 2 + 2, x // 2 + 2)
    expected = {(z - 2, y // 2 + 2, x // 2 + 2) for z, y, x, _ in BAD}
    assert {tuple(int(i) for i in p) for p in np.argwhere(np.isnan(image))} == expected


def test_reconstruct_fills_a_sinogram_store(tmp_path) -> None:
    from scorerecon.pipelines.tasks.ct import ct_geometry, simulate_sinogram

    hu = torch.full((2, 32, 32), -1000.0)
    hu[:, 8:24, 8:24] = 40.0
    geometry = ct_geometry(32, 10)
    sino = simulate_sinogram(hu, geometry, 1.0)[:, 0].numpy()
    sino[1, 3, 20], sino[1, 7, 5] = np.nan, np.inf
    ds = xr.Dataset({"sinogram": (("z", "angle", "det"), sino)}, coords={"angle": list(geometry.angles_deg)},
                    attrs={"image_size": 32, "pixel_size_mm": 1.0})
    write_store(ds, tmp_path / "sino.zarr")
    out = tmp_path / "rec.zarr"
    argv = ["reconstruct", "--task", "ct", "--input", str(tmp_path / "sino.zarr"), "-o", str(out), "--nfe", "2",
            "--threads", "1", "--quiet"]
    assert main(argv) == 2
    assert main([*argv, "--nonfinite", "mask"]) == 0
    assert np.isfinite(open_store(out)["image"].values).all()  # no voxel stands for one sample
    record = _record(out)["nonfinite"]
    assert record["variable"] == "sinogram" and record["count"] == 2 and record["per_slice"] == {"1": 2}
    assert "interpolation along the detector" in record["fill"] and "nothing marked" in record["output"]


def test_reconstruct_drops_kspace_lines_holding_nan(tmp_path) -> None:
    image = np.zeros((2, 32, 32), np.float32)
    image[:, 8:24, 10:22] = 1.0
    kspace = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(image, axes=(-2, -1)), norm="ortho"), axes=(-2, -1))
    kspace = kspace[None].astype(np.complex64)  # (coil 1, z 2, ky 32, kx 32), fully sampled
    kspace[0, 0, 16, 3] = complex(np.nan, np.nan)
    np.save(tmp_path / "k.npy", kspace)
    assert main(["ingest", str(tmp_path / "k.npy"), "-o", str(tmp_path / "k.zarr"), "-q"]) == 0
    out = tmp_path / "rec.zarr"
    argv = ["reconstruct", "--task", "mri", "--input", str(tmp_path / "k.zarr"), "-o", str(out), "--nfe", "2",
            "--slices", "0", "--mask", "none", "--threads", "1", "--quiet"]
    assert main(argv) == 2
    assert main([*argv, "--nonfinite", "mask"]) == 0
    assert np.isfinite(open_store(out)["image"].values).all()
    record = _record(out)
    assert record["nonfinite"]["count"] == 1 and record["nonfinite"]["per_slice"] == {"0": 1}
    assert record["nonfinite"]["ky_lines_dropped"] == [16]
    assert record["mask"]["kind"].startswith("as acquired")


def test_nonfinite_is_a_medical_option_only(tmp_path, capsys) -> None:
    assert main(["reconstruct", "--task", "sr", "--input", str(tmp_path / "x.png"), "-o", str(tmp_path / "o.zarr"),
                 "--nonfinite", "mask"]) == 2
    assert "--nonfinite: not an option of --task sr" in _one_line_error(capsys)


# ------------------------------------------------------------------------------------------ evaluate
def test_evaluate_refuses_then_masks(ct_store, tmp_path, capsys) -> None:
    argv = ["evaluate", "--task", "ct", "--input", str(ct_store), "--slices", "2", "--views", "8", "--nfe", "2",
            "--solvers", "dds", "--baselines", "fbp", "--threads", "1", "--quiet", "--json", str(tmp_path / "r.json")]
    assert main(argv) == 2
    line = _one_line_error(capsys)
    assert "2 non-finite" in line and "--nonfinite mask" in line and not (tmp_path / "r.json").exists()
    assert main([*argv, "--nonfinite", "mask"]) == 0
    result = json.loads((tmp_path / "r.json").read_text())
    record = result["params"]["nonfinite"]
    assert record["count"] == 2 and record["per_slice"] == {"2": 2} and "ground truth" in record["output"]
    assert all(np.isfinite(m["psnr"]) for m in result["methods"].values())
