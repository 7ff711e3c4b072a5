"""One guidance interface for inverse problems: tasks add a data term, never a sampler.

A reconstruction task supplies a forward operator (:class:`LinearOperator`) and a measurement
``y``; it wraps them in a :class:`Guidance` and passes that to
:func:`scorerecon.models.samplers.sample`. Every sampler calls the same two hooks:

``on_x0(x0_hat, ctx)``
    applied to the predicted clean image ``x0_hat = E[x_0 | x_t]`` (Tweedie) right after the
    network call. DDIM uses the corrected ``x0`` with the network's ``eps`` (DDS, Chung et al.,
    ICLR 2024); score-based predictors use the score implied by the corrected ``x0`` (the
    conversion lives in :mod:`scorerecon.models.parametrization`). Implementations:
    :class:`ConjugateGradientDataStep` (a few CG steps, DDS), :class:`ProximalDataStep` (exact
    proximal step, DiffPIR-style), :class:`MeasurementProjection` with ``on="x0"`` (hard
    replacement of the measured part of ``x0_hat``).

``on_state(x, ctx)``
    applied to the sampler state after every predictor / corrector update.
    :class:`MeasurementProjection` noises ``y`` to the state's level and merges it in
    measurement space (Song, Shen, Xing & Ermon, "Solving inverse problems in medical imaging
    with score-based generative models", ICLR 2022); :class:`DPSGuidance` takes a gradient step
    on ``||y - A(x0_hat(x_t))||^2`` through the network (Chung, Kim, Mccann, Klasky & Ye,
    "Diffusion posterior sampling for general noisy inverse problems", ICLR 2023).

The operator interface follows deepinv's physics objects (``A``, ``A_adjoint``, ``A_dagger``,
``prox_l2``) so operators written for one read naturally in the other. Operators act on real
tensors shaped like the image batch (complex data is stored as two real channels); all inner
products are per sample over the non-batch dims, so every method is batched.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

import torch

from scorerecon.models.parametrization import Prediction
from scorerecon.models.rng import SampleGenerators, randn
from scorerecon.models.sde import SDE

Tensor = torch.Tensor

__all__ = [
    "LinearOperator",
    "MaskedTransformOperator",
    "Guidance",
    "GuidanceContext",
    "ComposedGuidance",
    "MeasurementProjection",
    "DPSGuidance",
    "ConjugateGradientDataStep",
    "ProximalDataStep",
    "conjugate_gradient",
]


def _dot(a: Tensor, b: Tensor) -> Tensor:
    """Per-sample real inner product over all non-batch dims."""
    return (a * b).flatten(1).sum(1)


def _b(v: Tensor, like: Tensor) -> Tensor:
    return v.reshape(-1, *([1] * (like.ndim - 1)))


def conjugate_gradient(apply: Callable[[Tensor], Tensor], rhs: Tensor, x0: Tensor | None = None,
                       n_iter: int = 20, tol: float = 0.0) -> Tensor:
    """Solve ``apply(x) = rhs`` for a symmetric positive (semi-)definite ``apply``, per sample.

    Plain CG (Hestenes & Stiefel) run independently on every batch element; a sample whose
    residual falls below ``tol * ||rhs||`` (``tol`` at least 4 machine epsilons of the dtype)
    stops moving. Started at ``x0`` (zeros if
    ``None``); on a semi-definite system started in the range of ``apply`` it converges to the
    minimum-norm solution, which is what :meth:`LinearOperator.A_dagger` relies on.
    """
    x = torch.zeros_like(rhs) if x0 is None else x0.clone()
    r = rhs - apply(x) if x0 is not None else rhs.clone()
    p = r.clone()
    rs = _dot(r, r)
    # a residual below the dtype's rounding level is noise: iterating on it on a singular system
    # (A_dagger's normal equations) divides by p^T A p ~ 0 and throws x far into the null space
    tol = max(float(tol), 4 * torch.finfo(rhs.dtype).eps)
    stop = tol * tol * _dot(rhs, rhs)
    tiny = torch.finfo(rhs.dtype).tiny
    for _ in range(int(n_iter)):
        active = rs > torch.maximum(stop, torch.full_like(rs, tiny))
        if not bool(active.any()):
            break
        Ap = apply(p)
        pAp = _dot(p, Ap)
        step = torch.where(active & (pAp > 0), rs / pAp.clamp_min(tiny), torch.zeros_like(rs))
        x = x + _b(step, x) * p
        r = r - _b(step, r) * Ap
        rs_new = _dot(r, r)
        beta = torch.where(active, rs_new / rs.clamp_min(tiny), torch.zeros_like(rs))
        p = r + _b(beta, p) * p
        rs = rs_new
    return x


class LinearOperator(ABC):
    """A linear forward model ``y = A x`` (+ noise), deepinv-style.

    Subclasses implement :meth:`A` and :meth:`AH` (the adjoint under the real inner product of
    the stored tensors). Everything else has a generic CG-based default that subclasses with
    structure (masks, orthonormal transforms) override with closed forms.
    """

    @abstractmethod
    def A(self, x: Tensor) -> Tensor:
        """Forward operator, image batch -> measurement batch."""

    @abstractmethod
    def AH(self, y: Tensor) -> Tensor:
        """Adjoint operator, measurement batch -> image batch."""

    def normal(self, x: Tensor) -> Tensor:
        """``A^H A x`` (override when it has a cheaper form, e.g. a Toeplitz embedding)."""
        return self.AH(self.A(x))

    def A_adjoint(self, y: Tensor) -> Tensor:
        """deepinv name for :meth:`AH`."""
        return self.AH(y)

    def A_dagger(self, y: Tensor, n_iter: int = 100, tol: float = 1e-7) -> Tensor:
        """Minimum-norm least-squares solution ``A^+ y`` (CG on the normal equations from 0)."""
        return conjugate_gradient(self.normal, self.AH(y), None, n_iter, tol)

    def prox_l2(self, z: Tensor, y: Tensor, gamma: float | Tensor, n_iter: int = 100,
                tol: float = 1e-7) -> Tensor:
        """``argmin_x 1/2 ||A x - y||^2 + 1/(2 gamma) ||x - z||^2`` (deepinv's convention).

        Solves ``(A^H A + I/gamma) x = A^H y + z/gamma`` by CG started at ``z``. ``gamma`` may be
        a per-sample tensor.
        """
        inv = 1.0 / (gamma if isinstance(gamma, Tensor) else torch.tensor(float(gamma)))
        inv = _b(inv.to(z).expand(z.shape[0]), z)
        return conjugate_gradient(lambda v: self.normal(v) + inv * v, self.AH(y) + inv * z, z, n_iter, tol)

    def project(self, x: Tensor, y: Tensor, lam: float = 1.0) -> Tensor:
        """Move ``x`` a fraction ``lam`` of the way onto ``{x : A x = y}`` (orthogonally).

        ``x + lam A^+ (y - A x)``; ``lam = 1`` is the orthogonal projection onto the affine
        solution set, which for a mask in an orthonormal transform domain is hard replacement of
        the measured coefficients (Song et al., ICLR 2022, Eq. 9 with ``lambda = 1``).
        """
        return x + lam * self.A_dagger(y - self.A(x))


class MaskedTransformOperator(LinearOperator):
    """``A = mask * T``: keep the coefficients ``mask`` of an orthonormal transform ``T``.

    The measurement is stored full size in the transform domain with zeros outside the mask
    (deepinv's inpainting convention), so ``A A^H`` is the mask itself: a projection. That gives
    closed forms for ``A_dagger`` (= ``A^H``), ``prox_l2`` and :meth:`project` (the orthogonal
    decomposition of Song et al. 2022: ``T^{-1}[(1 - lam * mask) T x + lam * mask * y]``).

    Pixel inpainting: ``T`` = identity. Cartesian MRI: ``T`` = orthonormal 2-D FFT, mask = the
    sampled k-space lines. ``T`` must be orthonormal (``T_inv = T^H``) for the adjoint to hold.
    Subclass and override :meth:`T` / :meth:`T_inv`, or pass callables.
    """

    def __init__(self, mask: Tensor, T: Callable[[Tensor], Tensor] | None = None,
                 T_inv: Callable[[Tensor], Tensor] | None = None) -> None:
        self.mask = mask
        self._T, self._T_inv = T, T_inv

    def T(self, x: Tensor) -> Tensor:
        """The orthonormal transform (identity unless given / overridden)."""
        return x if self._T is None else self._T(x)

    def T_inv(self, z: Tensor) -> Tensor:
        """Inverse (= adjoint) of :meth:`T`."""
        return z if self._T_inv is None else self._T_inv(z)

    def _mask(self, like: Tensor) -> Tensor:
        return self.mask.to(device=like.device, dtype=like.dtype)

    def A(self, x: Tensor) -> Tensor:
        z = self.T(x)
        return self._mask(z) * z

    def AH(self, y: Tensor) -> Tensor:
        return self.T_inv(self._mask(y) * y)

    def A_dagger(self, y: Tensor, n_iter: int = 0, tol: float = 0.0) -> Tensor:
        return self.AH(y)

    def prox_l2(self, z: Tensor, y: Tensor, gamma: float | Tensor, n_iter: int = 0,
                tol: float = 0.0) -> Tensor:
        u = self.T(z)
        m = self._mask(u)
        g = gamma if isinstance(gamma, Tensor) else torch.tensor(float(gamma))
        g = _b(g.to(u).expand(u.shape[0]), u)
        # per coefficient: (m + 1/g) v = m y + u / g  ->  v = (g m y + u) / (g m + 1)
        return self.T_inv((g * m * y + u) / (g * m + 1.0))

    def project(self, x: Tensor, y: Tensor, lam: float = 1.0) -> Tensor:
        u = self.T(x)
        w = lam * self._mask(u)
        # written as a blend so that lam = 1 on a binary mask copies y bit for bit
        return self.T_inv((1.0 - w) * u + w * y)


@dataclass
class GuidanceContext:
    """What a guidance hook may look at during one sampler update.

    ``t`` is the time of the network call; ``alpha`` / ``sigma`` describe the noise level of the
    state (or, for ``on_x0``, of ``x_t``) the hook acts on: ``x = alpha x_0 + sigma noise``; they
    are ``1`` / ``0`` for the sampler's final, noise-free output. ``x_t`` and ``pred`` are the
    network input and output of this update: when the guidance declares ``requires_grad``, the
    sampler evaluates the predictor's network call with autograd on and ``x_t.requires_grad``,
    so ``pred`` carries the graph back to ``x_t`` at no extra network evaluation.
    ``predict(x)`` re-evaluates the model with grad enabled (counted as one NFE) for hooks that
    need the network at another point.
    """

    sde: SDE
    t: Tensor
    alpha: Tensor
    sigma: Tensor
    x_t: Tensor
    pred: Prediction
    stage: str  # "predictor" | "corrector" | "x0"
    step: int
    n_steps: int
    is_last: bool  # the sampler's final update: its output is noise-free (alpha 1, sigma 0)
    generator: torch.Generator | SampleGenerators | None
    predict: Callable[[Tensor], Prediction]

    def randn(self, like: Tensor) -> Tensor:
        """Standard normal noise shaped like ``like`` from the sampler's stream(s).

        Hooks draw their noise here rather than with ``torch.randn(generator=...)`` so that
        per-sample seeds (:class:`~scorerecon.models.rng.SampleGenerators`) stay per sample.
        """
        return randn(self.generator, like.shape, like.device, like.dtype)


class Guidance:
    """Base class: both hooks default to the identity; subclasses override one or both.

    ``requires_grad = True`` asks samplers to run the predictor's network call with autograd on
    (DPS). Hooks must return tensors without autograd history; samplers detach defensively.
    """

    requires_grad: bool = False

    def on_x0(self, x0_hat: Tensor, ctx: GuidanceContext) -> Tensor:
        """Data consistency on the predicted clean image; identity by default."""
        return x0_hat

    def on_state(self, x: Tensor, ctx: GuidanceContext) -> Tensor:
        """Data consistency on the sampler state after an update; identity by default."""
        return x

    @property
    def uses_x0(self) -> bool:
        """Whether :meth:`on_x0` is overridden (samplers skip the conversion otherwise)."""
        return type(self).on_x0 is not Guidance.on_x0

    @property
    def uses_state(self) -> bool:
        """Whether :meth:`on_state` is overridden."""
        return type(self).on_state is not Guidance.on_state


class ComposedGuidance(Guidance):
    """Apply several guidances in order (e.g. a CG step on ``x0`` plus a projection on ``x``)."""

    def __init__(self, *parts: Guidance) -> None:
        self.parts = parts
        self.requires_grad = any(p.requires_grad for p in parts)

    def on_x0(self, x0_hat: Tensor, ctx: GuidanceContext) -> Tensor:
        for p in self.parts:
            x0_hat = p.on_x0(x0_hat, ctx)
        return x0_hat

    def on_state(self, x: Tensor, ctx: GuidanceContext) -> Tensor:
        for p in self.parts:
            x = p.on_state(x, ctx)
        return x

    @property
    def uses_x0(self) -> bool:
        return any(p.uses_x0 for p in self.parts)

    @property
    def uses_state(self) -> bool:
        return any(p.uses_state for p in self.parts)


class MeasurementProjection(Guidance):
    """Song et al. (ICLR 2022): noise ``y`` to the current level, merge in measurement space.

    After every update the state ``x`` (at level ``alpha, sigma``) is replaced by
    ``x + lam A^+(y_t - A x)`` with ``y_t = alpha y + sigma A z``, ``z ~ N(0, I)`` drawn from the
    sampler's generator: a sample of the measurement of ``x_t`` under the forward process.
    ``lam = 1`` (and noiseless ``y``) is hard replacement of the measured coefficients (score-MRI,
    Chung & Ye 2022); ``lam < 1`` trades consistency for robustness to measurement noise. On the
    final, noise-free output ``y_t = y`` so ``lam = 1`` makes the output exactly consistent.

    ``on="x0"`` applies the same projection (without noise) to ``x0_hat`` instead, i.e. hard
    data consistency inside DDIM-type samplers.
    """

    def __init__(self, operator: LinearOperator, y: Tensor, lam: float = 1.0, on: str = "state",
                 project_corrector: bool = True) -> None:
        if on not in ("state", "x0"):
            raise ValueError("on must be 'state' or 'x0'")
        if not 0.0 <= lam <= 1.0:
            raise ValueError("lam must lie in [0, 1]")
        self.operator, self.y, self.lam, self.on = operator, y, float(lam), on
        self.project_corrector = project_corrector

    def on_x0(self, x0_hat: Tensor, ctx: GuidanceContext) -> Tensor:
        if self.on != "x0":
            return x0_hat
        return self.operator.project(x0_hat, self.y.to(x0_hat), self.lam)

    def on_state(self, x: Tensor, ctx: GuidanceContext) -> Tensor:
        if self.on != "state" or (ctx.stage == "corrector" and not self.project_corrector):
            return x
        y = self.y.to(x)
        if ctx.is_last:
            y_t = y
        else:
            z = ctx.randn(x)
            Az = self.operator.A(z)  # batched, so it fixes the broadcast shape of alpha / sigma
            y_t = _b(ctx.alpha, Az) * y + _b(ctx.sigma, Az) * Az
        return self.operator.project(x, y_t, self.lam)

    @property
    def uses_x0(self) -> bool:
        return self.on == "x0"

    @property
    def uses_state(self) -> bool:
        return self.on == "state"


class DPSGuidance(Guidance):
    """Diffusion posterior sampling (Chung et al., ICLR 2023), for any differentiable operator.

    After each predictor update ``x_{i-1}' -> x_{i-1}' - zeta_i grad_{x_i} ||y - A(x0_hat(x_i))||^2``
    with the gradient taken through the network at the *pre-update* state ``x_i`` (the sampler
    provides the graph, so no extra network call). With ``normalize=True`` (the paper's choice)
    ``zeta_i = step_size / ||y - A(x0_hat)||`` per sample. Corrector updates are left alone.
    The step moves ``x`` by about ``2 step_size ||A^H A||`` at low noise, so ``step_size`` must
    be scaled to the operator norm (the paper's 0.1-1 assume ``||A|| ~ 1``); too large a step
    overshoots and raises the residual.
    Works with any object that has a differentiable ``A`` (nonlinear operators included).
    """

    requires_grad = True

    def __init__(self, operator: LinearOperator, y: Tensor, step_size: float = 1.0,
                 normalize: bool = True) -> None:
        self.operator, self.y, self.step_size, self.normalize = operator, y, float(step_size), normalize

    def on_state(self, x: Tensor, ctx: GuidanceContext) -> Tensor:
        if ctx.stage != "predictor":
            return x
        x_t, pred = ctx.x_t, ctx.pred
        with torch.enable_grad():
            x0 = pred.x0
            if not (x_t.requires_grad and x0.requires_grad):
                pred = ctx.predict(x_t.detach())  # a hook-side NFE, counted by the sampler
                x_t, x0 = pred.x_t, pred.x0
            residual = self.y.to(x) - self.operator.A(x0)
            sq = residual.flatten(1).pow(2).sum(1)
            (grad,) = torch.autograd.grad(sq.sum(), x_t)
        step = torch.full_like(sq, self.step_size)
        if self.normalize:
            step = step / sq.detach().sqrt().clamp_min(1e-12)
        return (x - _b(step, x) * grad).detach()


class ConjugateGradientDataStep(Guidance):
    """DDS (Chung, Lee & Ye, ICLR 2024): a few CG steps of data consistency on ``x0_hat``.

    ``x0' = argmin_x ||A x - y||^2 + lam ||x - x0_hat||^2`` approximately, by ``n_iter`` CG
    iterations on ``(A^H A + lam I) x = A^H y + lam x0_hat`` started at ``x0_hat``. Few iterations
    keep ``x0'`` close to the data manifold (the Krylov subspace argument of DDS); ``lam -> 0``
    and many iterations approach the least-squares projection.
    """

    def __init__(self, operator: LinearOperator, y: Tensor, n_iter: int = 5, lam: float = 1e-2) -> None:
        if n_iter < 1 or lam < 0:
            raise ValueError("need n_iter >= 1 and lam >= 0")
        self.operator, self.y, self.n_iter, self.lam = operator, y, int(n_iter), float(lam)

    def on_x0(self, x0_hat: Tensor, ctx: GuidanceContext) -> Tensor:
        op, lam = self.operator, self.lam
        rhs = op.AH(self.y.to(x0_hat)) + lam * x0_hat
        return conjugate_gradient(lambda v: op.normal(v) + lam * v, rhs, x0_hat, self.n_iter)


class ProximalDataStep(Guidance):
    """Exact proximal data step on ``x0_hat`` (DiffPIR, Zhu et al., CVPRW 2023).

    ``x0' = argmin_x ||A x - y||^2 + rho_t ||x - x0_hat||^2`` solved through the operator's
    :meth:`LinearOperator.prox_l2` (closed form for masked orthonormal transforms, CG otherwise).
    ``rho_t = lam`` if ``noise_std == 0``; otherwise DiffPIR's ``rho_t = lam * noise_std^2 /
    (sigma_t / alpha_t)^2``, which trusts the prior more at high noise and the data at low noise.
    """

    def __init__(self, operator: LinearOperator, y: Tensor, lam: float = 1e-2, noise_std: float = 0.0) -> None:
        if lam <= 0:
            raise ValueError("lam must be positive")
        self.operator, self.y, self.lam, self.noise_std = operator, y, float(lam), float(noise_std)

    def on_x0(self, x0_hat: Tensor, ctx: GuidanceContext) -> Tensor:
        if self.noise_std > 0:
            snr_sigma = (ctx.sigma / ctx.alpha).clamp_min(1e-12)
            rho = self.lam * self.noise_std**2 / snr_sigma**2
        else:
            rho = torch.full_like(ctx.sigma, self.lam)
        # argmin ||Ax-y||^2 + rho ||x-z||^2  ==  prox_l2 with gamma = 1 / rho
        return self.operator.prox_l2(x0_hat, self.y.to(x0_hat), 1.0 / rho.to(x0_hat))
