"""Metrics follow DESIGN.md section 3 and agree with scikit-image on known cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from scorerecon.modalities.metrics import ct_metrics, image_metrics, nmse, psnr, ssim, window_hu


def _volume(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ref = rng.random((3, 32, 40)) * 5.0
    est = ref + 0.1 * rng.standard_normal(ref.shape)
    return ref, est


def test_psnr_known_value_and_skimage():
    ref = np.ones((2, 16, 16))
    assert psnr(ref, ref + 0.1) == pytest.approx(20.0, abs=1e-9)  # data range = max = 1, MSE = 0.01
    ref, est = _volume()
    assert psnr(ref, est) == pytest.approx(peak_signal_noise_ratio(ref, est, data_range=ref.max()), rel=1e-12)
    assert psnr(ref, est, data_range=2.0) == pytest.approx(peak_signal_noise_ratio(ref, est, data_range=2.0))


def test_ssim_is_per_slice_skimage_mean():
    ref, est = _volume(1)
    expected = np.mean([structural_similarity(r, e, data_range=ref.max()) for r, e in zip(ref, est, strict=True)])
    assert ssim(ref, est) == pytest.approx(expected, rel=1e-12)
    assert ssim(ref, ref) == pytest.approx(1.0)


def test_nmse_known_value():
    ref = np.full((4, 8, 8), 2.0)
    assert nmse(ref, ref * 1.1) == pytest.approx(0.01)


def test_inputs_torch_complex_and_batched_layouts():
    ref, est = _volume(2)
    phase = np.exp(1j * 0.3)
    ref_t = torch.from_numpy(ref * phase)[:, None]  # (S, 1, H, W) complex torch
    est_t = torch.from_numpy(est * phase)[:, None]
    out = image_metrics(ref_t, est_t)
    assert out["psnr"] == pytest.approx(psnr(np.abs(ref), np.abs(est)))
    assert out["ssim"] == pytest.approx(ssim(np.abs(ref), np.abs(est)))
    assert out["data_range"] == pytest.approx(np.abs(ref).max())
    with pytest.raises(ValueError):
        psnr(ref, est[:, :-1])


def test_ct_metrics_use_the_hu_window_with_unit_range():
    hu = np.linspace(-1500, 1500, 64 * 64).reshape(64, 64)
    w = window_hu(hu)
    assert w.min() == 0.0 and w.max() == 1.0
    assert window_hu(np.array([-1000.0, -300.0, 400.0])) == pytest.approx([0.0, 0.5, 1.0])
    noisy = hu + 14.0  # 1 % of the 1400 HU window -> 40 dB where nothing is clamped
    out = ct_metrics(hu, noisy)
    assert out["data_range"] == 1.0 and out["window_hu"] == [-1000.0, 400.0]
    inside = (hu > -1000) & (hu + 14 < 400)
    assert psnr(window_hu(hu)[inside][None, None], window_hu(noisy)[inside][None, None], 1.0) == pytest.approx(40.0)
