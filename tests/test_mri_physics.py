"""MRI physics: FFT convention, masks, adjoints, ESPIRiT, zero-filled and CS baselines (real data)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from skimage.transform import resize

from scorerecon.modalities.metrics import psnr
from scorerecon.modalities.mri import (
    CartesianMRI,
    MulticoilMRI,
    acceleration_of,
    channels_to_complex,
    complex_to_channels,
    equispaced_1d_mask,
    espirit_maps,
    fft2c,
    ifft2c,
    poisson_disc_mask,
    random_1d_mask,
    sens_combine,
    simulate_multicoil_kspace,
    tv_recon,
    zero_filled,
)
from scorerecon.modalities.mri.masks import center_columns
from scorerecon.models.guidance import LinearOperator

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
COLIN = DATA / "mri" / "colin27_t1.nii.gz"


@pytest.fixture(scope="module")
def colin_slice() -> np.ndarray:
    """Axial slice z=90 of colin27 (evaluation range; physics only, nothing tuned here), max 1."""
    if not COLIN.exists():
        pytest.skip(f"real data not found: {COLIN}")
    import nibabel as nib

    vol = nib.load(str(COLIN)).dataobj
    return (np.asarray(vol[:, :, 90], dtype=np.float32).T / 255.0).copy()  # (y, x) = (217, 181)


def _rand_complex(shape, dtype=torch.complex128, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, dtype=dtype, generator=g)


def _vdot(a, b):
    return torch.vdot(a.flatten(), b.flatten())


# --- FFT convention ------------------------------------------------------------------------------
def test_fft_convention_round_trip_parseval_and_centre():
    x = _rand_complex((2, 1, 20, 17))
    k = fft2c(x)
    torch.testing.assert_close(ifft2c(k), x)
    torch.testing.assert_close(k.abs().pow(2).sum(), x.abs().pow(2).sum())
    ref = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(x.numpy(), axes=(-2, -1)), norm="ortho"), axes=(-2, -1))
    np.testing.assert_allclose(k.numpy(), ref, atol=1e-12)
    ones = torch.ones(1, 1, 20, 17, dtype=torch.complex128)
    assert torch.argmax(fft2c(ones).abs()).item() == (20 // 2) * 17 + 17 // 2  # DC at (H//2, W//2)


def test_channel_layout_round_trip():
    z = _rand_complex((2, 3, 5, 4), torch.complex64)
    ch = complex_to_channels(z)
    assert ch.shape == (2, 6, 5, 4) and ch.dtype == torch.float32
    torch.testing.assert_close(ch[:, 2], z[:, 1].real)
    torch.testing.assert_close(ch[:, 3], z[:, 1].imag)
    torch.testing.assert_close(channels_to_complex(ch), z)


# --- masks ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("accel, cf", [(4, 0.08), (8, 0.04)])
def test_1d_masks_acceleration_centre_and_seed(accel, cf):
    shape = (217, 181)
    for fn in (random_1d_mask, equispaced_1d_mask):
        m = fn(shape, accel, seed=3)
        assert torch.equal(m, fn(shape, accel, seed=3))
        assert not torch.equal(m, fn(shape, accel, seed=4)) or fn is equispaced_1d_mask
        assert abs(acceleration_of(m) - accel) / accel < 0.05
        assert bool((m[:, center_columns(shape[1], cf)] == 1).all())
        assert bool((m == m[:1]).all())  # whole columns
    # fastMRI's Bernoulli variant: only the expectation is R
    bern = [acceleration_of(random_1d_mask(shape, accel, seed=s, exact=False)) for s in range(8)]
    assert abs(np.mean(bern) - accel) / accel < 0.15


def test_poisson_disc_mask():
    m = poisson_disc_mask((96, 96), 6, calib=(20, 20), seed=1)
    assert torch.equal(m, poisson_disc_mask((96, 96), 6, calib=(20, 20), seed=1))
    assert abs(acceleration_of(m) - 6) / 6 < 0.15
    assert bool((m[48 - 10:48 + 10, 48 - 10:48 + 10] == 1).all())


# --- adjoints ------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_cartesian_adjoint_and_normal(dtype, tol):
    op = CartesianMRI(random_1d_mask((24, 20), 4, seed=0))
    assert isinstance(op, LinearOperator)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 2, 24, 20, dtype=dtype, generator=g)
    y = torch.randn(3, 2, 24, 20, dtype=dtype, generator=g)
    lhs, rhs = (op.A(x) * y).sum(), (x * op.AH(y)).sum()
    assert abs(lhs - rhs) / abs(lhs) < tol
    torch.testing.assert_close(op.normal(x), op.AH(op.A(x)))
    xc, yc = channels_to_complex(x), channels_to_complex(y)
    lhs_c, rhs_c = _vdot(yc, op.A_complex(xc)), _vdot(op.AH_complex(yc), xc)
    assert abs(lhs_c - rhs_c) / abs(lhs_c) < tol


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_multicoil_adjoint_and_normal(dtype, tol):
    cdtype = torch.complex128 if dtype == torch.float64 else torch.complex64
    maps = _rand_complex((2, 4, 24, 20), cdtype, seed=1)  # per-sample maps
    op = MulticoilMRI(poisson_disc_mask((24, 20), 3, calib=(6, 6), seed=0), maps)
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 2, 24, 20, dtype=dtype, generator=g)
    y = torch.randn(2, 8, 24, 20, dtype=dtype, generator=g)
    assert op.A(x).shape == y.shape
    lhs, rhs = (op.A(x) * y).sum(), (x * op.AH(y)).sum()
    assert abs(lhs - rhs) / abs(lhs) < tol
    torch.testing.assert_close(op.normal(x), op.AH(op.A(x)))


# --- coils ---------------------------------------------------------------------------------------
def test_espirit_reproduces_the_image_and_full_mask_zero_filled_is_exact(colin_slice):
    img = resize(colin_slice, (96, 96), anti_aliasing=True).astype(np.float32)
    sim = simulate_multicoil_kspace(img, n_coils=8, seed=0)
    truth = sim.image
    # true maps: full-mask SENSE zero-filled == truth (maps have unit sum-of-squares)
    op = MulticoilMRI(torch.ones(96, 96), sim.sens_maps)
    zf = zero_filled(op.A_complex(truth[None, None]), sim.sens_maps)[0, 0]
    assert ((zf - truth).norm() / truth.norm()).item() < 1e-5
    # ESPIRiT maps from the ACS block reproduce the complex image up to one global phase
    maps = espirit_maps(sim.kspace, calib_width=24, max_iter=30)
    comb = sens_combine(sim.kspace, maps)
    phase = _vdot(comb, truth)
    phase = phase / phase.abs()
    assert ((comb * phase - truth).norm() / truth.norm()).item() < 0.02


def test_tv_beats_zero_filled_on_colin27_r4(colin_slice):
    img = torch.from_numpy(colin_slice)
    mask = random_1d_mask(img.shape, 4, seed=0)
    kspace = (fft2c(img.to(torch.complex64)) * mask)[None, None]
    zf = zero_filled(kspace)
    tv = tv_recon(kspace, mask)
    p_zf, p_tv = psnr(colin_slice, zf.abs()), psnr(colin_slice, tv.abs())
    assert p_tv > p_zf + 0.3, (p_zf, p_tv)


def test_guidance_interface_data_consistency():
    """The inherited guidance methods work on the real channel layout (hard replacement, CG pinv)."""
    g = torch.Generator().manual_seed(5)
    truth = torch.randn(2, 2, 24, 20, generator=g, dtype=torch.float64)
    x = torch.randn(2, 2, 24, 20, generator=g, dtype=torch.float64)
    single = CartesianMRI(random_1d_mask((24, 20), 4, seed=1))
    y = single.A(truth)
    torch.testing.assert_close(single.A(single.project(x, y)), y)
    maps = simulate_multicoil_kspace(np.ones((24, 20), np.float32), n_coils=4).sens_maps.to(torch.complex128)
    multi = MulticoilMRI(random_1d_mask((24, 20), 2, seed=1), maps)
    y = multi.A(truth)
    before = (multi.A(x) - y).norm()
    after = (multi.A(multi.project(x, y)) - y).norm()  # CG pseudo-inverse (guidance default, 100 its)
    assert after / before < 1e-2, float(after / before)


def test_torch_operators_and_the_kspace_reader_share_one_fft_convention():
    """fft2c/ifft2c (torch, operators) and image_to_kspace/kspace_to_image (NumPy, I/O) agree."""
    from scorerecon.modalities.io.kspace import image_to_kspace, kspace_to_image
    from scorerecon.modalities.mri.operators import fft2c, ifft2c

    rng = np.random.default_rng(3)
    image = (rng.standard_normal((2, 33, 48)) + 1j * rng.standard_normal((2, 33, 48))).astype(np.complex128)
    assert np.allclose(fft2c(torch.from_numpy(image)).numpy(), image_to_kspace(image), atol=1e-12)
    assert np.allclose(ifft2c(torch.from_numpy(image)).numpy(), kspace_to_image(image), atol=1e-12)
