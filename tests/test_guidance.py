"""Guidance hooks and the operator interface, on a Gaussian prior with exact scores.

With prior ``N(mu, Sigma)`` and ``y = A x + n``, ``n ~ N(0, s^2 I)``, the posterior is Gaussian
with mean ``mu + K (y - A mu)``, ``K = Sigma A^T (A Sigma A^T + s^2 I)^+``
(:meth:`AnalyticGaussianScoreModel.posterior`). Operators written here: pixel inpainting (a
mask with identity transform), a dense random Gaussian matrix (generic CG paths only), and
Cartesian Fourier undersampling with an orthonormal FFT on complex images stored as two real
channels.
"""

from __future__ import annotations

import math

import pytest
import torch
from analytic_gaussian import AnalyticGaussianScoreModel, correlated_cov

from scorerecon.models.guidance import (
    ComposedGuidance,
    ConjugateGradientDataStep,
    DPSGuidance,
    Guidance,
    GuidanceContext,
    LinearOperator,
    MaskedTransformOperator,
    MeasurementProjection,
    ProximalDataStep,
    conjugate_gradient,
)
from scorerecon.models.samplers import sample
from scorerecon.models.sde import SDES, VESDE, VPSDE

torch.set_num_threads(1)
F64 = torch.float64


class MatrixOperator(LinearOperator):
    """``A x = M vec(x)``: only ``A``/``AH`` given, so every other method is the generic CG one."""

    def __init__(self, M: torch.Tensor, image_shape: tuple[int, ...]) -> None:
        self.M, self.image_shape = M, image_shape

    def A(self, x):
        return x.flatten(1) @ self.M.to(x).T

    def AH(self, y):
        return (y @ self.M.to(y)).reshape(y.shape[0], *self.image_shape)


class FourierMaskOperator(MaskedTransformOperator):
    """Cartesian MRI: orthonormal 2-D FFT of a complex image ``(B, 2, H, W)`` (re, im), then a mask
    of sampled k-space lines; k-space is stored the same way, two real channels."""

    def T(self, x):
        k = torch.fft.fft2(torch.complex(x[:, 0], x[:, 1]), norm="ortho")
        return torch.stack([k.real, k.imag], 1)

    def T_inv(self, z):
        im = torch.fft.ifft2(torch.complex(z[:, 0], z[:, 1]), norm="ortho")
        return torch.stack([im.real, im.imag], 1)


def fourier_mask(h: int = 8, w: int = 8) -> torch.Tensor:
    lines = torch.zeros(h, dtype=F64)
    lines[[0, 1, 3, 7]] = 1.0  # a few phase-encode lines, DC included
    return lines[None, None, :, None].expand(1, 2, h, w).clone()


def inner(a, b):
    return (a * b).flatten(1).sum(1)


def operators():
    g = torch.Generator().manual_seed(0)
    pix_mask = (torch.rand(1, 1, 4, 4, generator=g) < 0.5).to(F64)
    return {
        "inpaint": (MaskedTransformOperator(pix_mask), (1, 4, 4)),
        "matrix": (MatrixOperator(torch.randn(5, 16, generator=g, dtype=F64), (1, 4, 4)), (1, 4, 4)),
        "fourier": (FourierMaskOperator(fourier_mask()), (2, 8, 8)),
    }


@pytest.mark.parametrize("name", ["inpaint", "matrix", "fourier"])
def test_adjoint_and_projection_identities(name: str) -> None:
    op, shape = operators()[name]
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, *shape, generator=g, dtype=F64)
    y = op.A(torch.randn(3, *shape, generator=g, dtype=F64))
    torch.testing.assert_close(inner(op.A(x), y), inner(x, op.AH(y)))
    torch.testing.assert_close(op.normal(x), op.AH(op.A(x)))
    p = op.project(x, y)
    torch.testing.assert_close(op.A(p), y)  # consistent
    torch.testing.assert_close(op.project(p, y), p)  # idempotent
    torch.testing.assert_close(inner(x - p, p - op.project(torch.zeros_like(x), y)),
                               torch.zeros(3, dtype=F64), atol=1e-9, rtol=0)  # orthogonal
    half = op.project(x, y, lam=0.5)
    torch.testing.assert_close(half, 0.5 * (x + p))
    # prox: optimality (A^H A + 1/gamma) x = A^H y + z / gamma
    gamma = 0.7
    xp = op.prox_l2(x, y, gamma)
    torch.testing.assert_close(op.normal(xp) + xp / gamma, op.AH(y) + x / gamma)


def test_closed_forms_agree_with_generic_cg() -> None:
    op, shape = operators()["fourier"]
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, *shape, generator=g, dtype=F64)
    y = op.A(torch.randn(2, *shape, generator=g, dtype=F64))
    close = lambda a, b: torch.testing.assert_close(a, b, atol=1e-7, rtol=1e-6)  # CG stops at rel. residual 1e-7
    close(op.A_dagger(y), LinearOperator.A_dagger(op, y))
    close(op.prox_l2(x, y, 0.3), LinearOperator.prox_l2(op, x, y, 0.3))
    close(op.project(x, y, 0.8), LinearOperator.project(op, x, y, 0.8))


def test_conjugate_gradient_solves_batched_spd_systems() -> None:
    g = torch.Generator().manual_seed(3)
    B = torch.randn(4, 6, 6, generator=g, dtype=F64)
    S = B @ B.transpose(1, 2) + 0.1 * torch.eye(6, dtype=F64)
    rhs = torch.randn(4, 6, generator=g, dtype=F64)
    sol = conjugate_gradient(lambda v: (S @ v[..., None])[..., 0], rhs, n_iter=50, tol=1e-12)
    torch.testing.assert_close(sol, torch.linalg.solve(S, rhs))


# --------------------------------------------------------------------------------------------
# hooks inside samplers
# --------------------------------------------------------------------------------------------
def image_prior(sde_name: str, shape: tuple[int, ...], seed: int = 0) -> AnalyticGaussianScoreModel:
    d = math.prod(shape)
    mu = 0.3 * torch.randn(d, generator=torch.Generator().manual_seed(seed), dtype=F64)
    return AnalyticGaussianScoreModel(SDES[sde_name](), mu, correlated_cov(d, seed))


HARD = [("ve", "em", {}, 20), ("vp", "rd", {}, 20), ("ve", "pc", {}, 20), ("ve", "ncsn", {}, 20),
        ("vp", "ddpm", {}, 30), ("subvp", "ode", {"method": "rk4"}, 20), ("ve", "annealed_langevin", {}, 20),
        ("vp", "ddim", {"eta": 0.5}, 10)]


@pytest.mark.parametrize("sde_name,name,opts,nfe", HARD, ids=[f"{s}-{n}" for s, n, _, _ in HARD])
def test_hard_projection_makes_inpainting_exact(sde_name: str, name: str, opts: dict, nfe: int) -> None:
    """Song 2022 with ``lam = 1`` and noiseless ``y``: measured pixels equal ``y`` bit for bit."""
    op, shape = operators()["inpaint"]
    model = image_prior(sde_name, shape)
    y = op.A(torch.randn(1, *shape, generator=torch.Generator().manual_seed(4), dtype=F64))
    res = sample(model, (5, *shape), name, nfe=nfe, seed=1, dtype=F64, guidance=MeasurementProjection(op, y), **opts)
    m = op.mask.bool().expand(5, *shape)
    assert torch.equal(res.x[m], y.expand(5, *shape)[m])
    assert res.nfe <= nfe and torch.isfinite(res.x).all()
    free = sample(model, (5, *shape), name, nfe=nfe, seed=1, dtype=F64, **opts).x
    assert not torch.allclose(free[m], res.x[m])


def test_projection_in_kspace_and_on_x0() -> None:
    """Fourier undersampling: the measured k-space lines of the output equal ``y`` (to FFT round-off)
    for the state projection and for the ``on="x0"`` variant inside DDIM; ``lam < 1`` does not."""
    op, shape = operators()["fourier"]
    model = image_prior("ve", shape, seed=1)
    y = op.A(torch.randn(1, *shape, generator=torch.Generator().manual_seed(5), dtype=F64))
    rel = lambda x: ((op.A(x) - y).flatten(1).norm(dim=1) / y.flatten(1).norm(dim=1)).max().item()
    x = sample(model, (3, *shape), "pc", nfe=20, seed=2, dtype=F64, guidance=MeasurementProjection(op, y)).x
    assert rel(x) < 1e-12
    x = sample(model, (3, *shape), "ddim", nfe=10, seed=2, dtype=F64, guidance=MeasurementProjection(op, y, on="x0")).x
    assert rel(x) < 1e-12
    soft = sample(model, (3, *shape), "pc", nfe=20, seed=2, dtype=F64, guidance=MeasurementProjection(op, y, lam=0.5)).x
    free = sample(model, (3, *shape), "pc", nfe=20, seed=2, dtype=F64).x
    assert 1e-6 < rel(soft) < rel(free)


@pytest.mark.parametrize("name", ["matrix", "fourier"])
def test_cg_and_proximal_data_steps_enforce_the_measurement(name: str) -> None:
    """DDS: DDIM + a few CG steps on ``x0_hat`` per step cuts ``||A x - y||`` by orders of
    magnitude compared with the unguided sampler (CG on ``A^T A + lam I`` with rank-5 ``A^T A``
    converges in 6 iterations; ``lam = 1e-6`` leaves a residual ~ lam). Same for the exact prox."""
    op, shape = operators()[name]
    model = image_prior("vp", shape, seed=2)
    y = op.A(torch.randn(1, *shape, generator=torch.Generator().manual_seed(6), dtype=F64))
    res_norm = lambda x: (op.A(x) - y).flatten(1).norm(dim=1).max().item()
    free = sample(model, (4, *shape), "ddim", nfe=10, seed=3, dtype=F64)
    cg = sample(model, (4, *shape), "ddim", nfe=10, seed=3, dtype=F64,
                guidance=ConjugateGradientDataStep(op, y, n_iter=6, lam=1e-6))
    prox = sample(model, (4, *shape), "ddim", nfe=10, seed=3, dtype=F64, guidance=ProximalDataStep(op, y, lam=1e-6))
    assert cg.nfe == prox.nfe == 10  # data steps cost no network evaluations
    assert res_norm(cg.x) < 1e-3 * res_norm(free.x)
    assert res_norm(prox.x) < 1e-3 * res_norm(free.x)
    weak = sample(model, (4, *shape), "ddim", nfe=10, seed=3, dtype=F64, guidance=ProximalDataStep(op, y, lam=10.0))
    assert res_norm(cg.x) < res_norm(weak.x) < res_norm(free.x)


def test_projection_pc_sample_mean_approaches_posterior_mean() -> None:
    """Noiseless inpainting of a correlated 2-D Gaussian (rho = 0.8; x_1 observed = 2): the Song
    2022 PC sampler (reverse diffusion + 5 Langevin steps per level, VE, projection after every
    update) draws ``x_2`` with mean and std of the exact conditional ``N(0.7, 0.6^2)``.

    Tolerance: 6 SE (``0.6 / sqrt(n)`` for the mean, ``0.6 / sqrt(2 n)`` for the std) plus a
    method allowance of 0.03 (projection-PC is an approximation of posterior sampling; at 10^5
    samples its bias measured 0.003 on the mean, 0.009 on the std). For contrast, the prior
    mean of x_2 is -0.5 and projection without corrector (plain reverse diffusion) lands at 0.25:
    both fail this tolerance, so the test can tell.
    """
    mu = torch.tensor([0.5, -0.5], dtype=F64)
    cov = torch.tensor([[1.0, 0.8], [0.8, 1.0]], dtype=F64)
    model = AnalyticGaussianScoreModel(VESDE(), mu, cov)
    op = MaskedTransformOperator(torch.tensor([1.0, 0.0], dtype=F64))
    y = torch.tensor([2.0, 0.0], dtype=F64)
    post_mean, post_cov = model.posterior(torch.tensor([[1.0, 0.0]], dtype=F64), y[:1], 0.0)
    n = 4000
    res = sample(model, (n, 2), "ncsn", nfe=900, seed=8, dtype=F64, guidance=MeasurementProjection(op, y),
                 n_corrector=5)
    assert res.nfe == 900
    x2 = res.x[:, 1]
    sd = post_cov[1, 1].sqrt().item()
    tol_mean = 6 * sd / math.sqrt(n) + 0.03
    tol_std = 6 * sd / math.sqrt(2 * n) + 0.03
    assert torch.all(res.x[:, 0] == 2.0)
    assert abs(x2.mean().item() - post_mean[1].item()) < tol_mean
    assert abs(x2.std().item() - sd) < tol_std
    assert abs(mu[1].item() - post_mean[1].item()) > 10 * tol_mean


def dps_reference(model, op, y, x_t, t, step):
    """Closed-form DPS update for the Gaussian prior: ``x0_hat(x) = (x + sigma^2 s(x)) / alpha`` is
    affine with Jacobian ``J = (I - sigma^2 C_t^{-1}) / alpha`` (symmetric), so
    ``grad ||y - A x0_hat||^2 = -2 J A^T (y - A x0_hat)``."""
    a = model.sde.alpha(t)[0].item()
    s = model.sde.sigma(t)[0].item()
    C = model.marginal_cov(t[0].item())
    J = (torch.eye(C.shape[0], dtype=F64) - s * s * torch.linalg.inv(C)) / a
    x0 = (x_t + s * s * model.score(x_t, t)) / a
    r = y - op.A(x0)
    grad = -2 * (op.AH(r).flatten(1) @ J).reshape(x_t.shape)
    return grad * step / r.flatten(1).norm(dim=1)[:, None, None, None]


def test_dps_step_is_the_gradient_through_the_network() -> None:
    op, shape = operators()["matrix"]
    model = image_prior("vp", shape, seed=3)
    g = torch.Generator().manual_seed(9)
    y = op.A(torch.randn(1, *shape, generator=g, dtype=F64))
    x_t = torch.randn(2, *shape, generator=g, dtype=F64)
    t = torch.full((2,), 0.4, dtype=F64)
    x_in = x_t.clone().requires_grad_(True)
    pred = model.predict(x_in, t)
    ctx = GuidanceContext(sde=model.sde, t=t, alpha=model.sde.alpha(t), sigma=model.sde.sigma(t), x_t=x_in,
                          pred=pred, stage="predictor", step=0, n_steps=10, is_last=False, generator=None,
                          predict=lambda z: pytest.fail("no recomputation needed"))
    x_next = torch.randn(2, *shape, generator=g, dtype=F64)
    out = DPSGuidance(op, y, step_size=0.5).on_state(x_next, ctx)
    torch.testing.assert_close(out, x_next - dps_reference(model, op, y, x_t, t, 0.5))


def test_dps_in_samplers_costs_no_extra_nfe_and_fits_the_data() -> None:
    op, shape = operators()["matrix"]
    model = image_prior("vp", shape, seed=4)
    y = op.A(torch.randn(1, *shape, generator=torch.Generator().manual_seed(10), dtype=F64))
    res_norm = lambda x: (op.A(x) - y).flatten(1).norm(dim=1).mean().item()
    for name, nfe in (("ddpm", 100), ("ddim", 30), ("em", 50)):
        free = sample(model, (16, *shape), name, nfe=nfe, seed=4, dtype=F64)
        dps = sample(model, (16, *shape), name, nfe=nfe, seed=4, dtype=F64, guidance=DPSGuidance(op, y, 0.1))
        assert dps.nfe == nfe
        assert res_norm(dps.x) < 0.25 * res_norm(free.x), name


class Recorder(Guidance):
    """Records every hook call (stage, level, last flag)."""

    def __init__(self) -> None:
        self.x0_calls, self.state_calls = [], []

    def on_x0(self, x0_hat, ctx):
        self.x0_calls.append((ctx.stage, ctx.t[0].item()))
        return x0_hat

    def on_state(self, x, ctx):
        self.state_calls.append((ctx.stage, ctx.alpha[0].item(), ctx.sigma[0].item(), ctx.is_last))
        return x


def test_hooks_fire_once_per_network_call_and_update() -> None:
    model = image_prior("ve", (1, 2, 2))
    rec = Recorder()
    res = sample(model, (2, 1, 2, 2), "pc", nfe=12, seed=0, dtype=F64, guidance=rec, n_corrector=2)
    assert res.nfe == 12 and len(rec.x0_calls) == 12 and len(rec.state_calls) == 12
    stages = [s for s, *_ in rec.state_calls]
    assert stages == ["corrector", "corrector", "predictor"] * 4
    assert [last for *_, last in rec.state_calls] == [False] * 11 + [True]
    assert rec.state_calls[-1][1:3] == (1.0, 0.0)  # final output: clean level
    a, s = rec.state_calls[2][1:3]  # first predictor step lands at t_1 = ts[1]
    t1 = torch.linspace(1, model.sde.eps, 4, dtype=F64)[1:2]
    assert a == pytest.approx(model.sde.alpha(t1).item()) and s == pytest.approx(model.sde.sigma(t1).item())
    # same result with and without a do-nothing guidance: hooks do not perturb the random stream
    # (not bitwise: the score is then recomputed from x0_hat, a round trip with round-off)
    plain = sample(model, (2, 1, 2, 2), "pc", nfe=12, seed=0, dtype=F64, n_corrector=2)
    torch.testing.assert_close(plain.x, res.x, rtol=1e-10, atol=1e-10)


def test_composed_guidance_applies_both_hooks() -> None:
    op, shape = operators()["fourier"]
    model = image_prior("ve", shape, seed=5)
    y = op.A(torch.randn(1, *shape, generator=torch.Generator().manual_seed(11), dtype=F64))
    g = ComposedGuidance(ConjugateGradientDataStep(op, y, 3, 1e-3), MeasurementProjection(op, y))
    assert g.uses_x0 and g.uses_state and not g.requires_grad
    res = sample(model, (2, *shape), "ddim", nfe=8, seed=1, dtype=F64, guidance=g)
    torch.testing.assert_close(op.A(res.x), y.expand_as(op.A(res.x)), atol=1e-12, rtol=0)


def test_vp_prior_shape_is_respected_with_unbatched_measurement() -> None:
    """``y`` without a batch dim broadcasts against the batch (one measurement, many samples)."""
    op = MaskedTransformOperator(torch.tensor([1.0, 0.0, 1.0], dtype=F64))
    model = AnalyticGaussianScoreModel(VPSDE(), torch.zeros(3, dtype=F64), torch.eye(3, dtype=F64))
    y = torch.tensor([0.5, 0.0, -0.5], dtype=F64)
    x = sample(model, (7, 3), "em", nfe=10, seed=0, dtype=F64, guidance=MeasurementProjection(op, y)).x
    assert torch.equal(x[:, 0], torch.full((7,), 0.5, dtype=F64))
    assert torch.equal(x[:, 2], torch.full((7,), -0.5, dtype=F64))
