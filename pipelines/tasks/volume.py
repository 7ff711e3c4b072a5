"""3-D reconstruction with 2-D (or 3-D patch) priors, and posterior sampling for uncertainty.

**2-D prior + TV along z** (DiffusionMBIR: Chung, Ryu, McCann, Klasky & Ye, "Solving 3D inverse
problems using pre-trained 2D diffusion models", CVPR 2023). All slices of a volume run through
the sampler as one batch (batch index = ``z``), so the 2-D prior denoises every slice at every
step; the data step on the denoised estimate ``x0_hat`` couples the slices by a total-variation
penalty along ``z`` only (in-plane structure is the prior's job):

    x0' = argmin_x 1/2 ||A x - y||^2 + mu/2 ||x - x0_hat||^2 + lam ||D_z x||_1

solved by a few ADMM iterations (split ``v = D_z x``; the ``x`` update is CG on
``A^H A + mu I + rho D_z^T D_z``, global over the volume; the ``v`` update soft-thresholding;
split and dual restarted at every diffusion step by default, see :class:`TVzADMM`). ``mu`` anchors ``x0'`` to the
prior's estimate as DDS's ``lam`` does (:class:`~scorerecon.models.guidance.ConjugateGradientDataStep`);
with ``lam = 0`` the step is exactly that per-slice CG step, which is the slice-by-slice
reference the tests compare against. :class:`TVzADMM` is a plain
:class:`~scorerecon.models.guidance.Guidance` (hook ``on_x0``), so any DDIM-type solver uses it.

**3-D patch prior**: a checkpoint whose card says ``network.spatial_dims == 3`` is applied to the
whole volume ``(1, 1, D, H, W)`` (fully convolutional, padded by
:class:`~scorerecon.pipelines.tasks.SliceModel`); the 2-D slice operator is lifted to it by
:class:`SliceStackOperator`.

**Uncertainty**: :func:`posterior_mean_std` draws ``N`` posterior samples (one noise stream per
slice and sample, :func:`~scorerecon.pipelines.tasks.sample_seeds`) and returns the mean and
per-voxel standard deviation of the magnitude. With hard data consistency the std vanishes on what
the measurement pins down and is positive on what it leaves free (unmeasured k-space, the null
space of a sparse-view projector).
"""

from __future__ import annotations

from typing import Any

import torch

from scorerecon.models.guidance import Guidance, GuidanceContext, LinearOperator, conjugate_gradient
from scorerecon.pipelines.tasks import Problem, Reconstruction, reconstruct

Tensor = torch.Tensor

__all__ = ["SliceStackOperator", "TVzADMM", "posterior_mean_std", "reconstruct_volume", "volume_problem", "z_tv"]


def _dz(x: Tensor) -> Tensor:
    """Forward differences along the batch (= z) axis: ``(D, ...) -> (D - 1, ...)``."""
    return x[1:] - x[:-1]


def _dzt(v: Tensor) -> Tensor:
    """Adjoint of :func:`_dz`: ``(D - 1, ...) -> (D, ...)``."""
    out = torch.zeros((v.shape[0] + 1, *v.shape[1:]), dtype=v.dtype, device=v.device)
    out[1:] += v
    out[:-1] -= v
    return out


def z_tv(x: Tensor) -> float:
    """Anisotropic total variation along z, ``sum |x[z+1] - x[z]|`` (magnitude for complex input)."""
    x = x.abs() if x.is_complex() else x
    return float(_dz(x).abs().sum())


class TVzADMM(Guidance):
    """DiffusionMBIR's data step with TV along z, on ``x0_hat`` of a slice batch (batch = z).

    ``lam``: TV weight; ``mu``: anchor to ``x0_hat``; ``rho``: ADMM penalty; ``n_admm`` ADMM
    iterations per diffusion step, each with ``n_cg`` CG iterations for the ``x`` update.
    ``warm_start=True`` keeps the split variable and dual across diffusion steps as DiffusionMBIR
    does; the default restarts them from ``x0_hat`` at every step, because at few NFE the first
    estimates (``x0_hat = (x_t - sigma eps) / alpha`` with ``alpha_1 ~ 0.007`` on the VP SDE) are
    far off and a warm-started split variable keeps their z-differences alive (measured on
    head-CT slices at 6 NFE: z-TV 3.6x *higher* than slice by slice with warm start).
    """

    def __init__(self, operator: LinearOperator, y: Tensor, lam: float = 1e-2, mu: float = 1e-2, rho: float = 1e-1,
                 n_admm: int = 2, n_cg: int = 5, warm_start: bool = False) -> None:
        if lam < 0 or mu < 0 or rho <= 0 or n_admm < 1 or n_cg < 1:
            raise ValueError("need lam >= 0, mu >= 0, rho > 0, n_admm >= 1, n_cg >= 1")
        self.operator, self.y = operator, y
        self.lam, self.mu, self.rho, self.n_admm, self.n_cg = float(lam), float(mu), float(rho), int(n_admm), int(n_cg)
        self.warm_start = bool(warm_start)
        self.v: Tensor | None = None
        self.u: Tensor | None = None

    def on_x0(self, x0_hat: Tensor, ctx: GuidanceContext | None = None) -> Tensor:
        op, mu, rho = self.operator, self.mu, self.rho
        y = self.y.to(x0_hat)
        coupled = self.lam > 0 and x0_hat.shape[0] > 1
        if not coupled:  # per-slice CG step (DDS); identical to lam = 0
            rhs = op.AH(y) + mu * x0_hat
            return conjugate_gradient(lambda w: op.normal(w) + mu * w, rhs, x0_hat, self.n_cg)
        if not self.warm_start or self.v is None or self.v.shape != _dz(x0_hat).shape:
            w = _dz(x0_hat)
            self.v = torch.sign(w) * (w.abs() - self.lam / rho).clamp_min(0.0)
            self.u = torch.zeros_like(self.v)
        x = x0_hat
        aty = op.AH(y)

        def apply(w: Tensor) -> Tensor:  # one global system over the volume: batch of one
            vol = w[0]
            return (op.normal(vol) + mu * vol + rho * _dzt(_dz(vol)))[None]

        for _ in range(self.n_admm):
            rhs = aty + mu * x0_hat + rho * _dzt(self.v - self.u)
            x = conjugate_gradient(apply, rhs[None], x[None], self.n_cg)[0]
            dx = _dz(x)
            w = dx + self.u
            self.v = torch.sign(w) * (w.abs() - self.lam / rho).clamp_min(0.0)
            self.u = self.u + dx - self.v
        return x


class SliceStackOperator(LinearOperator):
    """Lift a 2-D slice operator to volumes ``(B, C, D, H, W)`` for a 3-D prior.

    Measurements are ``(B, D, *slice_measurement)``: one slice measurement per ``z``.
    """

    def __init__(self, operator: LinearOperator) -> None:
        self.operator = operator

    def A(self, x: Tensor) -> Tensor:
        b, c, d, h, w = x.shape
        out = self.operator.A(x.permute(0, 2, 1, 3, 4).reshape(b * d, c, h, w))
        return out.reshape(b, d, *out.shape[1:])

    def AH(self, y: Tensor) -> Tensor:
        b, d = y.shape[:2]
        out = self.operator.AH(y.reshape(b * d, *y.shape[2:]))
        return out.reshape(b, d, *out.shape[1:]).permute(0, 2, 1, 3, 4)

    def normal(self, x: Tensor) -> Tensor:
        b, c, d, h, w = x.shape
        out = self.operator.normal(x.permute(0, 2, 1, 3, 4).reshape(b * d, c, h, w))
        return out.reshape(b, d, c, h, w).permute(0, 2, 1, 3, 4)


def volume_problem(problem: Problem) -> Problem:
    """A slice-batch problem ``(D, C, H, W)`` as one volume ``(1, C, D, H, W)`` for a 3-D prior."""
    d, c, h, w = problem.shape
    slices_to_physical = problem.to_physical

    def to_physical(m: Tensor) -> Tensor:
        return slices_to_physical(m[0].transpose(0, 1))

    return Problem(SliceStackOperator(problem.operator), problem.y[None], (1, c, d, h, w), to_physical,
                   {**problem.info, "prior": "3d patch prior on the whole volume"}, problem.channels_as_batch)


def _spatial_dims(model: Any) -> int:
    return int(getattr(model, "card", {}).get("network", {}).get("spatial_dims", 2))


def reconstruct_volume(problem: Problem, model: Any, solver: str = "dds", nfe: int = 50, seed: int = 0,
                       tv_z: float = 1e-2, n_samples: int = 1, device: torch.device | str = "cpu",
                       admm: dict[str, Any] | None = None, **overrides: Any) -> Reconstruction:
    """Reconstruct the slices of ``problem`` (batch = consecutive z) as one volume.

    2-D prior: a DDIM-type ``solver`` (``dds`` or ``prox`` sampler settings) with its data step
    replaced by :class:`TVzADMM` (``lam = tv_z``; ``admm`` passes ``mu``, ``rho``, ``n_admm``,
    ``n_cg``); ``tv_z = 0`` is the slice-by-slice DDS reference. 3-D prior (card
    ``network.spatial_dims == 3``): the solver runs on the whole volume through
    :class:`SliceStackOperator` (no extra TV). Returns a slice-batch :class:`Reconstruction`.
    """
    if _spatial_dims(model) == 3:
        return reconstruct(volume_problem(problem), model, solver, nfe=nfe, seed=seed, n_samples=n_samples,
                           device=device, **overrides)
    if solver not in ("dds", "prox"):
        raise ValueError("TV-z ADMM replaces the x0 data step: use solver 'dds' or 'prox'")
    opts = dict(admm or {})

    def factory(operator: LinearOperator, y: Tensor) -> Guidance:
        return TVzADMM(operator, y, lam=tv_z, **opts)

    return reconstruct(problem, model, solver, nfe=nfe, seed=seed, n_samples=n_samples, device=device,
                       guidance=factory, **overrides)


def posterior_mean_std(problem: Problem, model: Any, solver: str = "dc", n_samples: int = 4, nfe: int = 50,
                       seed: int = 0, device: torch.device | str = "cpu", **overrides: Any) -> Reconstruction:
    """``n_samples`` posterior samples -> ``.image`` (mean) and ``.std`` (per-pixel std of ``|x|``)."""
    if n_samples < 2:
        raise ValueError("uncertainty needs n_samples >= 2")
    return reconstruct(problem, model, solver, nfe=nfe, seed=seed, n_samples=n_samples, device=device, **overrides)
