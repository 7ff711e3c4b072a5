"""``ingest -> reconstruct -> export --format nifti|dicom`` for CT and MRI, geometry and provenance checked.

Real data: the demo head CT and Colin27 T1 volumes, cut to a few slices with nibabel's own
slicer (which rewrites the affine) and given an oblique orientation, then written as a real
DICOM series by the exporter and ingested again; the demo twix k-space. Every expected affine
is derived independently of :mod:`scorerecon.modalities.io.grid`: from the world positions of
the input voxels each output voxel averages. The DICOM outputs must be a derived series in
the source study referencing the exact source instances; ``dciodvfy`` (dicom3tools) checks
them when installed. Geo tasks: ``tests/test_remote_tasks.py`` exports pan-sharpening to a COG.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest

from scorerecon.modalities.io.export import LPS_FROM_RAS
from scorerecon.modalities.io.store import open_store
from scorerecon.pipelines.cli import main
from scorerecon.pipelines.ingest import ingest

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "data" / "demo"
CT_PRIOR, MR_PRIOR = REPO / "checkpoints" / "head_ct_ddpm", REPO / "checkpoints" / "brain_ddpm"
CT_IMAGE_STORAGE, MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.4"


def _need(*paths: Path) -> None:
    for p in paths:
        if not p.exists():
            pytest.skip(f"{p.name} not present")


def dciodvfy_errors(path: Path) -> list[str]:
    if shutil.which("dciodvfy") is None:
        return []
    report = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
    return [line for line in (report.stdout + report.stderr).splitlines() if line.startswith("Error")]


def _oblique(img: nib.Nifti1Image, degrees: float, origin: tuple[float, float, float]) -> nib.Nifti1Image:
    """``img`` with its voxel axes rotated about S by ``degrees`` and its first voxel moved to ``origin``."""
    c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    rot = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    affine = np.eye(4)
    affine[:3, :3] = rot @ img.affine[:3, :3]
    affine[:3, 3] = origin
    out = nib.Nifti1Image(np.asarray(img.dataobj), affine)
    out.set_sform(affine, code=1)
    return out


def _block_centre(affine: np.ndarray, xs: range, ys: range, z: int) -> np.ndarray:
    """World position (RAS) of the mean of input voxels ``xs x ys`` in slice ``z``."""
    points = [affine @ np.array([x, y, z, 1.0]) for x in xs for y in ys]
    return np.mean(points, axis=0)[:3]


def _run(*args: str) -> None:
    assert main([*args, "--quiet"] if args[0] == "reconstruct" else list(args)) == 0


@pytest.fixture(scope="module")
def ct_series(tmp_path_factory) -> tuple[Path, Path, list[pydicom.Dataset]]:
    """A 6-slice oblique head-CT DICOM series (written by the exporter), its ingested store and headers."""
    _need(DEMO / "head_ct_hu.nii.gz")
    root = tmp_path_factory.mktemp("ct")
    cut = _oblique(nib.load(DEMO / "head_ct_hu.nii.gz").slicer[:, :, 48:54], 20.0, (-110.0, -95.0, 40.0))
    nib.save(cut, root / "cut.nii.gz")
    ingest([root / "cut.nii.gz"], root / "nifti.zarr", modality="CT")
    series = root / "series"
    _run("export", str(root / "nifti.zarr"), "--format", "dicom", "-o", str(series))
    store = ingest([series], root / "dicom.zarr")
    headers = [pydicom.dcmread(p, stop_before_pixels=True) for p in sorted(series.glob("*.dcm"))]
    return store, series, headers


def test_ct_reconstruction_of_a_dicom_series_exports_a_derived_series_in_place(ct_series, tmp_path) -> None:
    _need(CT_PRIOR)
    store, _, headers = ct_series
    source = open_store(store)
    a_in = np.asarray(source.attrs["affine"])
    out = tmp_path / "rec.zarr"
    # slices 1, 3, 5; 4x4 block means (64 x 64), then a centre crop to 60 x 60 (2 pixels off each side)
    _run("reconstruct", "--task", "ct", "--input", str(store), "-o", str(out), "--slices", "1:6:2", "--views", "8",
         "--downsample", "4", "--crop", "60", "--nfe", "2", "--threads", "1")
    rec = open_store(out)
    assert rec["image"].shape == (3, 60, 60) and rec.attrs["modality"] == "CT"
    assert list(rec["source_slice"].values) == [1, 3, 5]
    a_out = np.asarray(rec.attrs["affine"])
    # voxel (i, j, k) of the output averages input voxels x, y in 4 (i + 2) .. 4 (i + 2) + 3 of slice 1 + 2 k
    for i, j, k in [(0, 0, 0), (59, 0, 1), (7, 41, 2)]:
        xs, ys = range(4 * (i + 2), 4 * (i + 2) + 4), range(4 * (j + 2), 4 * (j + 2) + 4)
        np.testing.assert_allclose(a_out @ np.array([i, j, k, 1.0]), [*_block_centre(a_in, xs, ys, 1 + 2 * k), 1.0],
                                   atol=1e-6)
    # coordinates stay in the input's frame
    np.testing.assert_allclose(rec["z"].values, source["z"].values[[1, 3, 5]])
    np.testing.assert_allclose(rec["x"].values[:2], source["x"].values[0] + np.array([9.5, 13.5]) * rec.attrs[
        "spacing"][0] / 4, rtol=1e-6)
    # provenance: the DICOM files' sha256, the prior, the command, versions
    assert {s["path"] for s in rec.attrs["source_files"]} == {str(p.resolve()) for p in (ct_series[1]).glob("*.dcm")}
    card = json.loads((CT_PRIOR / "model_card.json").read_text())
    assert rec.attrs["checkpoint_sha256"] == card["weights"]["sha256"]
    assert Path(rec.attrs["checkpoint"]) == CT_PRIOR.resolve()
    assert rec.attrs["command"].startswith("scorerecon reconstruct") and "--views 8" in rec.attrs["command"]
    assert {"python", "scorerecon", "torch", "numpy"} <= set(rec.attrs["software"])

    nii = tmp_path / "rec.nii.gz"
    _run("export", str(out), "--format", "nifti", "-o", str(nii))
    img = nib.load(nii)
    assert img.shape == (60, 60, 3)
    np.testing.assert_allclose(img.affine, a_out, atol=1e-5)
    np.testing.assert_allclose(np.asarray(img.dataobj).transpose(2, 1, 0), rec["image"].values, atol=1e-3)

    dcm_dir = tmp_path / "derived"
    _run("export", str(out), "--format", "dicom", "-o", str(dcm_dir))
    files = sorted(dcm_dir.glob("*.dcm"))
    assert len(files) == 3
    for k, path in enumerate(files):
        assert dciodvfy_errors(path) == []
        dcm, src = pydicom.dcmread(path), headers[1 + 2 * k]
        assert dcm.SOPClassUID == CT_IMAGE_STORAGE and dcm.Modality == "CT"
        assert dcm.StudyInstanceUID == src.StudyInstanceUID and dcm.FrameOfReferenceUID == src.FrameOfReferenceUID
        assert dcm.SeriesInstanceUID != src.SeriesInstanceUID
        (ref,) = dcm.SourceImageSequence
        assert ref.ReferencedSOPInstanceUID == src.SOPInstanceUID
        assert dcm.ReferencedSeriesSequence[0].SeriesInstanceUID == src.SeriesInstanceUID
        # the derived slice lies in its source slice's plane, at the first block's centre
        expected = (LPS_FROM_RAS @ np.array([*_block_centre(a_in, range(8, 12), range(8, 12), 1 + 2 * k), 1.0]))[:3]
        np.testing.assert_allclose([float(v) for v in dcm.ImagePositionPatient], expected, atol=1e-3)
        np.testing.assert_allclose([float(v) for v in dcm.ImageOrientationPatient],
                                   [float(v) for v in src.ImageOrientationPatient], atol=1e-5)
        np.testing.assert_allclose([float(v) for v in dcm.PixelSpacing], [4 * float(v) for v in src.PixelSpacing],
                                   rtol=1e-5)


def test_unevenly_spaced_slices_keep_coordinates_and_nifti_refuses_them(ct_series, tmp_path, capsys) -> None:
    _need(CT_PRIOR)
    store, _, _ = ct_series
    out = tmp_path / "rec.zarr"
    _run("reconstruct", "--task", "ct", "--input", str(store), "-o", str(out), "--slices", "0,1,4", "--views", "4",
         "--downsample", "8", "--nfe", "1", "--threads", "1")
    rec = open_store(out)
    assert "affine" not in rec.attrs and "not evenly spaced" in rec.attrs["geometry_note"]
    np.testing.assert_allclose(rec["z"].values, open_store(store)["z"].values[[0, 1, 4]])
    capsys.readouterr()
    assert main(["export", str(out), "--format", "nifti", "-o", str(tmp_path / "x.nii.gz")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "affine" in err
    assert not (tmp_path / "x.nii.gz").exists()


def test_mri_from_an_image_store_exports_nifti_and_mr_dicom(tmp_path) -> None:
    _need(MR_PRIOR, DEMO / "colin27_t1.nii.gz")
    cut = _oblique(nib.load(DEMO / "colin27_t1.nii.gz").slicer[:, :, 84:88], -15.0, (-80.0, -130.0, 10.0))
    nib.save(cut, tmp_path / "cut.nii.gz")
    store = ingest([tmp_path / "cut.nii.gz"], tmp_path / "t1.zarr", modality="MR")
    a_in = np.asarray(open_store(store).attrs["affine"])
    out = tmp_path / "rec.zarr"
    # slices 1, 2 of 4; centre crop 217 x 181 -> 64 x 64: (217 - 64) // 2 = 76 rows, (181 - 64) // 2 = 58 columns
    _run("reconstruct", "--task", "mri", "--input", str(store), "-o", str(out), "--slices", "1,2", "--crop", "64",
         "--accel", "4", "--nfe", "2", "--threads", "1")
    rec = open_store(out)
    assert rec["image"].shape == (2, 64, 64) and rec.attrs["modality"] == "MR"
    assert rec.attrs["reconstruction"]["input"].startswith("single-coil k-space simulated")
    a_out = np.asarray(rec.attrs["affine"])
    np.testing.assert_allclose(a_out @ [0, 0, 0, 1.0], a_in @ [58, 76, 1, 1.0], atol=1e-6)
    np.testing.assert_allclose(a_out @ [63, 5, 1, 1.0], a_in @ [58 + 63, 76 + 5, 2, 1.0], atol=1e-6)
    nii = tmp_path / "rec.nii.gz"
    _run("export", str(out), "--format", "nifti", "-o", str(nii))
    np.testing.assert_allclose(nib.load(nii).affine, a_out, atol=1e-5)
    dcm_dir = tmp_path / "dcm"
    _run("export", str(out), "--format", "dicom", "-o", str(dcm_dir))
    files = sorted(dcm_dir.glob("*.dcm"))
    assert len(files) == 2
    for k, path in enumerate(files):
        assert dciodvfy_errors(path) == []
        dcm = pydicom.dcmread(path)
        assert dcm.SOPClassUID == MR_IMAGE_STORAGE and dcm.Modality == "MR"
        expected = (LPS_FROM_RAS @ a_in @ [58, 76, 1 + k, 1.0])[:3]
        np.testing.assert_allclose([float(v) for v in dcm.ImagePositionPatient], expected, atol=1e-3)


def test_mri_from_twix_kspace_gets_the_fov_grid_and_exports(tmp_path) -> None:
    _need(MR_PRIOR, DEMO / "twix_gre_phantom_2coil.dat")
    store = ingest([DEMO / "twix_gre_phantom_2coil.dat"], tmp_path / "twix.zarr")
    out = tmp_path / "rec.zarr"
    _run("reconstruct", "--task", "mri", "--input", str(store), "-o", str(out), "--accel", "3", "--nfe", "2",
         "--threads", "1")
    rec = open_store(out)
    assert rec["image"].shape == (1, 160, 160)  # 320 readout samples, 2x oversampling removed
    a = np.asarray(rec.attrs["affine"])
    # 200 mm FOV over 160 pixels in-plane, 4 mm slice; the 160 x 160 (oversampling-free) grid centred at 0
    np.testing.assert_allclose(np.diag(a)[:3], [1.25, 1.25, 4.0])
    np.testing.assert_allclose(a @ [79.5, 79.5, 0, 1.0], [0, 0, 0, 1.0], atol=1e-9)
    assert "twix FOV" in rec.attrs["affine_source"] and "orientation and position unknown" in rec.attrs["affine_source"]
    nii = tmp_path / "rec.nii.gz"
    _run("export", str(out), "--format", "nifti", "-o", str(nii))
    np.testing.assert_allclose(nib.load(nii).affine, a, atol=1e-6)


def test_prepare_slices_map_matches_prepare_slices() -> None:
    """The index map :mod:`~scorerecon.modalities.io.grid` composes is what ``prepare_slices`` does to pixels."""
    from scorerecon.modalities.io.grid import prepare_slices_map
    from scorerecon.pipelines.evaluate import prepare_slices

    h, w = 37, 50
    yy, xx = np.meshgrid(np.arange(h, dtype=np.float32), np.arange(w, dtype=np.float32), indexing="ij")
    ramps = np.stack([xx + 1000, yy + 1000])  # offset: the pads (filled with the minimum) stand apart
    for crop, down, square in [(None, 1, True), (20, 1, False), (64, 1, False), (None, 3, True), (12, 2, True),
                               (None, 4, False)]:
        m, shape = prepare_slices_map((h, w), crop, down, square)
        out = prepare_slices(ramps, crop, down, square)
        assert out.shape[-2:] == shape
        oy, ox = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
        x_in, y_in = m[0, 0] * ox + m[0, 3], m[1, 1] * oy + m[1, 3]
        inside = (x_in >= 0) & (x_in <= (w // down) * down - 1) & (y_in >= 0) & (y_in <= (h // down) * down - 1)
        assert inside.any()
        np.testing.assert_allclose(out[0][inside], x_in[inside] + 1000)
        np.testing.assert_allclose(out[1][inside], y_in[inside] + 1000)


# ------------------------------------------------------------------------------ runs from anywhere
def test_reconstruct_and_evaluate_find_their_priors_from_any_folder(tmp_path) -> None:
    """The default priors (``checkpoints/<name>``) resolve with another working directory (docs/checkpoints.md)."""
    import sys

    _need(CT_PRIOR, DEMO / "head_ct_hu.nii.gz")
    store = ingest([DEMO / "head_ct_hu.nii.gz"], tmp_path / "ct.zarr")
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "SCORERECON_CHECKPOINTS"}
    env["OMP_NUM_THREADS"] = "1"
    cli = [sys.executable, "-m", "scorerecon.pipelines.cli"]
    common = ["--task", "ct", "--input", str(store), "--slices", "50", "--views", "4", "--downsample", "8",
              "--nfe", "1", "--threads", "1", "--quiet"]
    rec = subprocess.run([*cli, "reconstruct", *common, "-o", "rec.zarr"], cwd=work, env=env,
                         capture_output=True, text=True, timeout=300)
    assert rec.returncode == 0, rec.stderr
    assert Path(open_store(work / "rec.zarr").attrs["checkpoint"]) == CT_PRIOR.resolve()
    ev = subprocess.run([*cli, "evaluate", *common, "--solvers", "dds", "--baselines", "fbp", "--json", "ev.json"],
                        cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert ev.returncode == 0, ev.stderr
    assert json.loads((work / "ev.json").read_text())["methods"]["dds"]["nfe"] == 1


def test_checkpoint_search_order(tmp_path, monkeypatch) -> None:
    """``$SCORERECON_CHECKPOINTS`` first, then the shipped folder, then the cwd; ``./x`` means the cwd only."""
    from scorerecon.errors import InputError
    from scorerecon.models.checkpoint import resolve_checkpoint

    _need(CT_PRIOR)
    first, second = tmp_path / "a", tmp_path / "b"
    (second / "head_ct_ddpm").mkdir(parents=True)
    (first / "mine").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SCORERECON_CHECKPOINTS", f"{first}{os.pathsep}{second}")
    assert resolve_checkpoint("checkpoints/head_ct_ddpm") == second / "head_ct_ddpm"  # the variable wins
    assert resolve_checkpoint("mine") == first / "mine"
    monkeypatch.delenv("SCORERECON_CHECKPOINTS")
    assert resolve_checkpoint("head_ct_ddpm").resolve() == CT_PRIOR.resolve()  # the shipped folder
    assert resolve_checkpoint("a/mine") == tmp_path / "a" / "mine"  # then the working directory
    with pytest.raises(InputError, match="does not exist"):
        resolve_checkpoint("./head_ct_ddpm")  # explicitly here, and it is not
    with pytest.raises(InputError, match="looked in .*checkpoints"):
        resolve_checkpoint("no_such_prior")


def test_ct_from_a_sinogram_store_gets_the_stated_pixel_grid(tmp_path) -> None:
    """A sinogram store states no image affine: the grid is its pixel size and slice spacing, centred at 0."""
    import torch
    import xarray as xr

    from scorerecon.modalities.io.store import write_store
    from scorerecon.pipelines.tasks.ct import ct_geometry, simulate_sinogram

    _need(CT_PRIOR, DEMO / "head_ct_hu.nii.gz")
    volume = np.asarray(nib.load(DEMO / "head_ct_hu.nii.gz").dataobj[::8, ::8, 50:53], dtype=np.float32)
    hu = torch.from_numpy(np.ascontiguousarray(volume.transpose(2, 1, 0)))  # (3, 32, 32) at 8 x 0.957 mm
    geometry = ct_geometry(32, 10)
    sino = simulate_sinogram(hu, geometry, 8 * 0.957)[:, 0].numpy()
    ds = xr.Dataset({"sinogram": (("z", "angle", "det"), sino)}, coords={"angle": list(geometry.angles_deg)},
                    attrs={"image_size": 32, "pixel_size_mm": 8 * 0.957, "slice_spacing_mm": 1.5})
    write_store(ds, tmp_path / "sino.zarr")
    out = tmp_path / "rec.zarr"
    _run("reconstruct", "--task", "ct", "--input", str(tmp_path / "sino.zarr"), "-o", str(out), "--slices", "1",
         "--nfe", "1", "--threads", "1")
    rec = open_store(out)
    a = np.asarray(rec.attrs["affine"])
    np.testing.assert_allclose(np.diag(a)[:3], [8 * 0.957, 8 * 0.957, 1.5])
    np.testing.assert_allclose(a @ [15.5, 15.5, 0, 1.0], [0, 0, 0, 1.0], atol=1e-9)  # the middle of 3 slices
    assert "orientation and position unknown" in rec.attrs["affine_source"]
    _run("export", str(out), "--format", "nifti", "-o", str(tmp_path / "rec.nii.gz"))
    np.testing.assert_allclose(nib.load(tmp_path / "rec.nii.gz").affine, a, atol=1e-5)
