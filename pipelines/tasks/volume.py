"""3-D reconstruction with 2-D (or 3-D patch) priors, and posterior sampling for uncertainty.

**2-D prior + TV along z** (DiffusionMBIR: Chung, Ryu, McCann, Klasky & Ye, "Solving 3D inverse
problems using pre-trained 2D diffusion models", CVPR 2023). All slices of a volume run through
the sampler as one batch (batch index = ``z``), so the 2-D prior denoises every slice at every
step; the data step on the denoised estimate ``x0_hat`` couples the slices by a total-variation
penalty along ``z`` only (in-plane structure is the prior's job):

    x0' = argmin_x 1/2 ||A x - y||^2 + mu/2 ||x - x0_hat||^2 + lam ||D_z x||_1

solved by a few ADMM iterations (split ``v = D_z x``; the ``x`` update is CG on
``A^H A + mu I + rho D_z^T D_z``, global over the volume; the ``v`` update soft-thresholding;
split and dual restarted at every diffusion step, see :class:`~.tv_admm.TVzADMM`). ``mu`` anchors ``x0'`` to the
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

from scorerecon.models.guidance import Guidance, LinearOperator
from scorerecon.pipelines.tasks import Problem, Reconstruction, reconstruct
from scorerecon.pipelines.tasks.tv_admm import TVzADMM, dz

Tensor = torch.Tensor

__all__ = ["SliceStackOperator", "TVzADMM", "posterior_mean_std", "reconstruct_volume", "volume_problem", "z_tv"]


def z_tv(x: Tensor) -> float:
    """Anisotropic total variation along z, ``sum |x[z+1] - x[z]|`` (magnitude for complex input)."""
    x = x.abs() if x.is_complex() else x
    return float(dz(x).abs().sum())


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
