"""Noise-aware DDS on measured k-space: the noise estimate and the data-step weight it sets (issue 15).

Real Colin27 slices, complex Gaussian noise of known std added to their k-space; the weight rule's
constant was chosen on training data by benchmarks/noise_weight.py (not asserted here).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from scorerecon.modalities.mri.noise import kspace_noise_std
from scorerecon.pipelines.tasks import solver_spec
from scorerecon.pipelines.tasks.mri import NOISE_WEIGHT, mri_problem, noise_weighted_defaults, simulate_singlecoil

REPO = Path(__file__).resolve().parents[1]
COLIN = REPO / "data" / "demo" / "colin27_t1.nii.gz"
NORMALIZATION = {"method": "percentile", "percentiles": [0.5, 99.5], "values": [0.0, 180.0], "range": [-1.0, 1.0]}


def _slices() -> torch.Tensor:
    if not COLIN.exists():
        pytest.skip("demo Colin27 volume not present")
    import nibabel as nib

    from scorerecon.pipelines.evaluate import prepare_slices

    volume = np.asarray(nib.load(COLIN).dataobj, dtype=np.float32)[:, :, [60, 120]].transpose(2, 1, 0)
    return torch.from_numpy(prepare_slices(volume, 128, 1, square=True))


def _noisy(clean: torch.Tensor, std: float) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    return clean + std * torch.complex(torch.randn(clean.shape, generator=gen), torch.randn(clean.shape, generator=gen))


def test_the_corner_estimate_finds_the_added_noise() -> None:
    clean = simulate_singlecoil(_slices(), torch.ones(128, 128))
    assert kspace_noise_std(clean) < 0.05 * float(clean.abs().std())  # a real image's tail, no noise
    for std in (0.5, 2.0, 8.0):
        estimate = kspace_noise_std(_noisy(clean, std))
        assert 0.8 * std < estimate < 1.5 * std, (std, estimate)


def test_measured_noise_raises_the_dds_weight_and_simulated_data_keep_the_default() -> None:
    images = _slices()
    mask = torch.zeros(128, 128)
    mask[::3] = 1
    mask[56:72] = 1
    clean = simulate_singlecoil(images, torch.ones(128, 128))
    default = float(solver_spec("dds")["lam"])
    noisy = mri_problem(_noisy(clean, 4.0) * mask, mask, NORMALIZATION, intensity="auto", phase=None)
    sigma = noisy.info["noise"]["kspace_std_model"]
    lam = noisy.spec("dds")["lam"]
    assert lam > default and lam == pytest.approx(NOISE_WEIGHT * sigma ** 2, rel=1e-4)
    assert noisy.spec("dds", lam=0.5)["lam"] == 0.5  # a caller's setting still wins
    assert noisy.select([1]).spec("dds")["lam"] == noisy.spec("dds")["lam"]  # the whole input's estimate
    simulated = mri_problem(_noisy(clean, 4.0) * mask, mask, NORMALIZATION, intensity="auto", phase=None, noise=0.0)
    assert simulated.spec("dds")["lam"] == default and simulated.info["noise"]["kspace_std_model"] == 0
    assert noise_weighted_defaults(0.0) == ({}, noise_weighted_defaults(0.0)[1])
    with pytest.raises(ValueError, match="noise"):
        mri_problem(clean * mask, mask, NORMALIZATION, noise="guess")
