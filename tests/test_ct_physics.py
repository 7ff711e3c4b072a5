"""CT physics: geometry, exact adjoints, agreement with skimage, FBP, iterative baselines, noise."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from skimage.transform import iradon, radon

from scorerecon.modalities.ct import (
    ParallelBeamGeometry,
    ParallelBeamProjector,
    fbp,
    hu_to_mu,
    mu_to_hu,
    poisson_sinogram,
    sart_recon,
    transmission_counts,
    tv_recon,
)
from scorerecon.modalities.metrics import ct_metrics, psnr
from scorerecon.models.guidance import LinearOperator

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
HEAD = DATA / "ct" / "head_ct_hu.nii.gz"
PIXEL_MM = 0.957


@pytest.fixture(scope="module")
def head_slice_hu() -> torch.Tensor:
    """Axial slice z=50 of the head CT in HU, native 256^2, float64 ``(1, 1, 256, 256)``."""
    if not HEAD.exists():
        pytest.skip(f"real data not found: {HEAD}")
    import nibabel as nib

    sl = np.asarray(nib.load(str(HEAD)).dataobj[:, :, 50], dtype=np.float64).T.copy()
    return torch.from_numpy(sl)[None, None]


def _down2(hu: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.avg_pool2d(hu, 2)


def test_geometries():
    full = ParallelBeamGeometry.full(128)
    assert full.n_angles == 180 and full.n_det == 182 and full.angles_deg[-1] == 179.0
    sparse = ParallelBeamGeometry.sparse_view(128, 60)
    assert sparse.angles_deg[1] == 3.0 and sparse.angular_step_deg == 3.0
    la = ParallelBeamGeometry.limited_angle(128, 120)
    assert la.n_angles == 120 and la.angles_deg[0] == 0.0 and la.angles_deg[-1] == 119.0


@pytest.mark.parametrize("backend", ["sparse", "grid"])
@pytest.mark.parametrize("kind", ["sparse_view", "limited_angle"])
@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_radon_adjoint(backend, kind, dtype, tol):
    geo = ParallelBeamGeometry.sparse_view(48, 30) if kind == "sparse_view" else \
        ParallelBeamGeometry.limited_angle(48, 120, n_angles=40)
    op = ParallelBeamProjector(geo, backend=backend)
    assert isinstance(op, LinearOperator)
    g = torch.Generator().manual_seed(0)
    # non-negative x, y: no cancellation in <Ax, y>, so |lhs - rhs| / |lhs| is a fair relative error
    x = torch.rand(2, 1, 48, 48, dtype=dtype, generator=g)
    y = torch.rand(2, 1, *geo.sinogram_shape, dtype=dtype, generator=g)
    lhs, rhs = (op.A(x) * y).sum(), (x * op.AH(y)).sum()
    assert abs(lhs - rhs) / abs(lhs) < tol
    # signed data: error relative to the Cauchy-Schwarz bound ||Ax|| ||y||
    x, y = 2 * x - 1, 2 * y - 1
    lhs, rhs = (op.A(x) * y).sum(), (x * op.AH(y)).sum()
    assert abs(lhs - rhs) / (op.A(x).norm() * y.norm()) < tol / 10
    torch.testing.assert_close(op.normal(x), op.AH(op.A(x)))
    # autograd through A gives AH, and AH's backward is A
    xr = x.clone().requires_grad_(True)
    (op.A(xr) * y).sum().backward()
    torch.testing.assert_close(xr.grad, op.AH(y))
    yr = y.clone().requires_grad_(True)
    (op.AH(yr) * x).sum().backward()
    torch.testing.assert_close(yr.grad, op.A(x))


def test_backends_agree():
    geo = ParallelBeamGeometry.sparse_view(48, 30)
    x = torch.rand(1, 2, 48, 48, generator=torch.Generator().manual_seed(1))
    a = ParallelBeamProjector(geo, backend="sparse").A(x)
    b = ParallelBeamProjector(geo, backend="grid").A(x)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5 * float(b.abs().max()))


def test_radon_matches_skimage(head_slice_hu):
    mu = hu_to_mu(_down2(head_slice_hu), 2 * PIXEL_MM)[0, 0].numpy()
    geo = ParallelBeamGeometry.full(128, 90)
    theta = np.asarray(geo.angles_deg)
    ours = ParallelBeamProjector(geo, backend="grid").A(torch.from_numpy(mu)[None, None])[0, 0].numpy()
    # circle=False: skimage pads to ceil(sqrt(2) N) bins on the same centre -> the whole sinogram
    ref = radon(mu, theta, circle=False).T
    assert np.abs(ours - ref).max() / np.abs(ref).max() < 1e-5
    # circle=True (the usual call): our central N bins, for an image zero outside the disc
    yy, xx = np.mgrid[:128, :128]
    disc = mu * (((yy - 64) ** 2 + (xx - 64) ** 2) <= 62**2)
    ours_c = ParallelBeamProjector(geo, backend="grid").A(torch.from_numpy(disc)[None, None])[0, 0].numpy()
    off = geo.n_det // 2 - 64
    ref_c = radon(disc, theta, circle=True).T
    assert np.corrcoef(ours_c[:, off:off + 128].ravel(), ref_c.ravel())[0, 1] > 0.9999
    assert np.abs(ours_c[:, off:off + 128] - ref_c).max() / np.abs(ref_c).max() < 1e-5


def test_fbp_matches_iradon(head_slice_hu):
    mu = hu_to_mu(_down2(head_slice_hu), 2 * PIXEL_MM)
    geo = ParallelBeamGeometry.full(128, 90)
    sino = ParallelBeamProjector(geo, backend="grid").A(mu)
    for name in ("ramp", "hann"):
        ours = fbp(sino, geo, name)[0, 0].numpy()
        ref = iradon(sino[0, 0].numpy().T, np.asarray(geo.angles_deg), circle=False, filter_name=name)
        assert psnr(ref, ours, data_range=ref.max() - ref.min()) > 60


def test_full_view_fbp_of_head_ct_above_30db(head_slice_hu):
    geo = ParallelBeamGeometry.full(256)
    sino = ParallelBeamProjector(geo, backend="grid").A(hu_to_mu(head_slice_hu, PIXEL_MM))
    recon_hu = mu_to_hu(fbp(sino, geo), PIXEL_MM)
    assert ct_metrics(head_slice_hu, recon_hu)["psnr"] > 30


def test_sparse_view_tv_beats_fbp(head_slice_hu):
    hu = _down2(head_slice_hu).float()
    geo = ParallelBeamGeometry.sparse_view(128, 60)
    op = ParallelBeamProjector(geo)
    sino = op.A(hu_to_mu(hu, 2 * PIXEL_MM))
    p_fbp = ct_metrics(hu, mu_to_hu(fbp(sino, geo), 2 * PIXEL_MM))["psnr"]
    p_tv = ct_metrics(hu, mu_to_hu(tv_recon(sino, op, n_iter=100), 2 * PIXEL_MM))["psnr"]
    p_sart = ct_metrics(hu, mu_to_hu(sart_recon(sino, geo, n_iter=1), 2 * PIXEL_MM))["psnr"]
    assert p_tv > p_fbp + 1.0, (p_fbp, p_tv)
    assert p_sart > 20.0, p_sart  # a working SART (it does not beat FBP on noise-free data in 1 pass)


def test_poisson_noise_statistics_and_seed():
    p = torch.full((400_000,), 2.0, dtype=torch.float64)
    i0 = 1e4
    counts = transmission_counts(p, i0, seed=7)
    expected = i0 * np.exp(-2.0)
    assert counts.mean().item() == pytest.approx(expected, rel=2e-3)
    assert counts.var().item() == pytest.approx(expected, rel=2e-2)  # Poisson: variance == mean
    y = poisson_sinogram(p, i0, seed=7)
    torch.testing.assert_close(y, poisson_sinogram(p, i0, seed=7))
    assert not torch.equal(y, poisson_sinogram(p, i0, seed=8))
    assert y.mean().item() == pytest.approx(2.0, abs=2e-3)
    assert y.var().item() == pytest.approx(1.0 / expected, rel=3e-2)  # delta method: var(-log N/I0) ~ 1/E[N]
    starved = poisson_sinogram(torch.full((1000,), 30.0), 1e3, seed=0)
    assert torch.isfinite(starved).all() and starved.max().item() <= np.log(1e3) + 1e-6


def test_hu_mu_round_trip():
    hu = torch.tensor([-1000.0, 0.0, 400.0, 1500.0])
    torch.testing.assert_close(mu_to_hu(hu_to_mu(hu, 0.5), 0.5), hu)
    assert hu_to_mu(torch.tensor([-1024.0])).item() == 0.0
