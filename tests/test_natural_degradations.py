"""Natural-image degradations: exact adjoints, SVD consistency, reference resamplers, seeded masks.

Physics is checked on a real Kodak crop (the shared data) in float64.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from real_data import SHARED_DATA
from scipy import ndimage

from scorerecon.modalities.natural import degradations as deg
from scorerecon.modalities.natural.datasets import load_rgb
from scorerecon.models.guidance import LinearOperator

KODAK = SHARED_DATA / "natural" / "kodak"


@pytest.fixture(scope="module")
def crop() -> torch.Tensor:
    """kodim02, a 64x48 RGB crop as (1, 3, 64, 48) float64 in [0, 1]."""
    if not KODAK.is_dir():
        pytest.skip("shared Kodak images not available")
    img = load_rgb(KODAK / "kodim02.png")[200:264, 300:348]
    return torch.from_numpy(img.transpose(2, 0, 1)[None].astype(np.float64))


def _operators(shape: tuple[int, int]) -> dict[str, deg.SVDOperator]:
    mask = deg.make_mask("random", shape, seed=3)
    return {
        "bicubic_x4": deg.BicubicDown(shape, 4),
        "bicubic_x2": deg.BicubicDown(shape, 2),
        "gaussian_blur": deg.Blur(deg.gaussian_kernel(9, 1.5), shape),
        "motion_blur": deg.Blur(deg.motion_kernel(11, 30.0), shape),
        "inpainting": deg.Inpainting(mask),
        "identity": deg.Identity(shape),
    }


@pytest.mark.parametrize("name", ["bicubic_x4", "bicubic_x2", "gaussian_blur", "motion_blur", "inpainting", "identity"])
def test_adjoint_and_svd_are_exact(crop, name) -> None:
    op = _operators(tuple(crop.shape[-2:]))[name]
    g = torch.Generator().manual_seed(0)
    ax = op.A(crop)
    y = torch.randn(ax.shape, generator=g, dtype=torch.float64)
    lhs, rhs = (ax * y).sum(), (crop * op.AH(y)).sum()
    assert abs(float(lhs - rhs)) <= 1e-10 * float(ax.norm() * y.norm())
    # V is orthonormal and invertible
    c = op.Vt(crop)
    assert torch.allclose(op.V(c), crop, atol=1e-10)
    assert float(c.abs().pow(2).sum()) == pytest.approx(float(crop.pow(2).sum()), rel=1e-10)
    # A = U diag(s) V^T: the measurement seen in the spectral basis is V^T x where s > 0, and
    # ||A x||^2 = sum s^2 |V^T x|^2 (U orthonormal) up to the components dropped as s ~ 0
    s = op.singular_values(c)
    measured = s > 0
    ybar = op.spectral_measurement(ax)
    assert torch.allclose(torch.where(measured, ybar, 0 * ybar), torch.where(measured, c, 0 * c), atol=1e-8)
    energy = float((s**2 * c.abs() ** 2).sum())
    assert energy == pytest.approx(float(ax.pow(2).sum()), rel=1e-3)


def test_bicubic_matches_torch_and_pillow(crop) -> None:
    op = deg.BicubicDown(tuple(crop.shape[-2:]), 4)
    ours = op.A(crop)
    ref = torch.nn.functional.interpolate(crop, size=(16, 12), mode="bicubic", antialias=True, align_corners=False)
    assert float((ours - ref).abs().max()) < 1e-12  # same filter: float64 rounding only
    band = crop[0, 1].numpy().astype(np.float32)
    pil = np.asarray(Image.fromarray(band, mode="F").resize((12, 16), Image.Resampling.BICUBIC))
    assert np.abs(pil - ours[0, 1].numpy()).max() < 1e-5  # Pillow resamples in float32
    up = deg.bicubic_resize(ours, (64, 48))
    ref_up = torch.nn.functional.interpolate(ours, size=(64, 48), mode="bicubic", antialias=True, align_corners=False)
    assert float((up - ref_up).abs().max()) < 1e-12


def test_blur_is_circular_convolution(crop) -> None:
    kernel = deg.motion_kernel(11, 30.0)
    assert kernel.sum() == pytest.approx(1.0) and (kernel >= 0).all()
    ours = deg.Blur(kernel, tuple(crop.shape[-2:])).A(crop)[0, 0].numpy()
    ref = ndimage.convolve(crop[0, 0].numpy(), kernel, mode="wrap")
    assert np.abs(ours - ref).max() < 1e-12


def test_masks_are_seeded_and_sized() -> None:
    shape = (96, 128)
    for kind in ("random", "strokes"):
        a, b = deg.make_mask(kind, shape, seed=1), deg.make_mask(kind, shape, seed=1)
        c = deg.make_mask(kind, shape, seed=2)
        assert a.shape == shape and set(np.unique(a)) <= {0.0, 1.0}
        assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert deg.random_mask(shape, missing=0.7, seed=0).mean() == pytest.approx(0.3, abs=0.02)
    box = deg.box_mask(shape, fraction=0.25)
    assert 1 - box.mean() == pytest.approx(0.25, abs=0.01) and box[0, 0] == 1 and box[48, 64] == 0
    strokes = deg.stroke_mask(shape, seed=0)
    assert 0.05 < 1 - strokes.mean() < 0.8


def test_noise_and_low_light_on_a_real_image(crop) -> None:
    noisy = deg.add_noise(crop, 25.0, seed=0)
    assert float((noisy - crop).std()) * 255 == pytest.approx(25.0, rel=0.05)
    assert torch.equal(noisy, deg.add_noise(crop, 25.0, seed=0))
    img = crop[0].numpy().transpose(1, 2, 0)
    low = deg.LowLight(exposure=0.15, gamma=1.5, peak=600.0, read_noise=0.01)
    dark = low(img, np.random.default_rng(0))
    assert dark.shape == img.shape and dark.min() >= 0 and dark.max() <= 1
    assert np.array_equal(dark, low(img, np.random.default_rng(0)))
    # without read noise nothing is clipped at 0 and shot noise is unbiased: the mean is the signal
    shot_only = deg.LowLight(exposure=0.15, gamma=1.5, peak=600.0, read_noise=0.0)(img, np.random.default_rng(1))
    assert shot_only.mean() == pytest.approx(((0.15 * img) ** 1.5).mean(), rel=0.05)


@pytest.mark.parametrize("name", ["bicubic_x4", "gaussian_blur", "motion_blur", "inpainting"])
def test_closed_form_prox_matches_conjugate_gradient(crop, name) -> None:
    op = _operators(tuple(crop.shape[-2:]))[name]
    y = op.A(crop)
    z = torch.rand(crop.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    gamma = torch.tensor([0.7], dtype=torch.float64)
    reference = LinearOperator.prox_l2(op, z, y, gamma, n_iter=500, tol=1e-14)  # the core's generic CG
    assert torch.allclose(op.prox_l2(z, y, gamma), reference, atol=1e-8)


@pytest.mark.parametrize("name", ["bicubic_x4", "bicubic_x2", "gaussian_blur", "motion_blur"])
def test_pseudo_inverse_is_bounded_and_consistent_in_float32(name: str) -> None:
    """``A^+ y`` in float32: the closed form projects onto the kept spectral components, the generic CG stays bounded.

    CG used to keep iterating on a float32 rounding-level residual and divide by ``p^T A p ~ 0``:
    bicubic x4's ``A^+ y`` came out ~1e10 (runs everywhere: a seeded random image, no data).
    """
    op = _operators((64, 48))[name]
    x = torch.rand(2, 3, 64, 48, generator=torch.Generator().manual_seed(0))
    y = op.A(x)
    coeffs = op.Vt(x)
    kept = op.V(torch.where(op.singular_values(coeffs) > 0, coeffs, torch.zeros_like(coeffs))).real
    closed, cg = op.A_dagger(y), LinearOperator.A_dagger(op, y)
    assert closed.dtype == torch.float32 and torch.allclose(closed, kept.float(), atol=1e-4)
    assert cg.abs().max() < 2 * x.abs().max()  # bounded: no excursion into the null space
    if name.startswith("bicubic"):  # well conditioned: CG reaches the same minimum-norm solution
        assert torch.allclose(cg, closed, atol=1e-3) and torch.allclose(op.A(cg), y, atol=1e-4)
