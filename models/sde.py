"""Forward SDEs of the score-based family: VE (NCSN/SMLD), VP (DDPM) and sub-VP.

One time convention for the whole project: continuous ``t`` in ``[eps, 1]``; ``t = 0`` is data,
``t = 1`` is the prior. Every SDE here is affine in ``x``, so its perturbation kernel is
Gaussian: ``x_t = alpha(t) * x_0 + sigma(t) * noise``. :meth:`SDE.marginal_prob` returns that
mean and std; samplers and parametrisations only ever need ``alpha`` and ``sigma``.

The discrete frameworks are discretisations of these SDEs (Song et al., ICLR 2021):

* **NCSN / SMLD** = :class:`VESDE` discretised on the geometric noise ladder
  ``sigma_i``; its reverse-diffusion predictor plus Langevin corrector is annealed Langevin.
* **DDPM** = :class:`VPSDE` discretised with ``beta_i = beta_min/N + i (beta_max - beta_min) /
  (N (N-1))``; the reverse-diffusion predictor on it is DDPM ancestral sampling.
* **Score SDE** = either, or :class:`SubVPSDE`, integrated in continuous time.

Written here rather than imported because no maintained library exposes all three SDEs with
marginals, discretisations and prior log-densities behind one interface (score_sde's
``sde_lib.py`` is the design anchor; it is not a package).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import torch

Tensor = torch.Tensor


def _bcast(values: Tensor, like: Tensor) -> Tensor:
    """Per-sample scalars shaped to broadcast against a batch ``like``."""
    return values.reshape(-1, *([1] * (like.ndim - 1)))


class SDE(ABC):
    """``dx = f(x, t) dt + g(t) dw`` with a Gaussian perturbation kernel."""

    name: str = "sde"
    eps: float = 1e-5  # smallest time used when sampling / training (numerical stability)

    def __init__(self, N: int = 1000) -> None:
        self.N = int(N)

    @property
    def T(self) -> float:
        return 1.0

    # --- the continuous process -------------------------------------------------------------
    @abstractmethod
    def alpha(self, t: Tensor) -> Tensor:
        """Mean coefficient of ``x_t | x_0``."""

    @abstractmethod
    def sigma(self, t: Tensor) -> Tensor:
        """Standard deviation of ``x_t | x_0``."""

    @abstractmethod
    def sde(self, x: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """Drift ``f(x, t)`` and diffusion ``g(t)`` (per sample)."""

    def marginal_prob(self, x0: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and std of the perturbation kernel ``p_t(x_t | x_0)``."""
        return _bcast(self.alpha(t), x0) * x0, self.sigma(t)

    def perturb(self, x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        """``x_t = alpha x_0 + sigma noise``."""
        return _bcast(self.alpha(t), x0) * x0 + _bcast(self.sigma(t), x0) * noise

    @abstractmethod
    def prior_std(self) -> float:
        """Standard deviation of the (isotropic Gaussian) prior at ``t = T``."""

    def prior_sampling(self, shape: tuple[int, ...], generator: torch.Generator | None = None,
                       device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> Tensor:
        return torch.randn(shape, generator=generator, device=device, dtype=dtype) * self.prior_std()

    def prior_logp(self, z: Tensor) -> Tensor:
        """Log-density of the prior at ``z``, summed over all but the batch dim."""
        s = self.prior_std()
        dim = z[0].numel()
        return (-0.5 * dim * math.log(2 * math.pi * s * s)
                - z.flatten(1).pow(2).sum(1) / (2 * s * s))

    # --- discretisations (DDPM / SMLD) --------------------------------------------------------
    def discretize(self, x: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """Discrete-time ``x_{i+1} = x_i + f_i + G_i z``; Euler-Maruyama unless overridden."""
        dt = 1.0 / self.N
        drift, diffusion = self.sde(x, t)
        return drift * dt, diffusion * math.sqrt(dt)

    def reverse(self, score_fn, probability_flow: bool = False) -> ReverseSDE:
        """The reverse-time SDE (or probability-flow ODE) driven by ``score_fn(x, t)``."""
        return ReverseSDE(self, score_fn, probability_flow)

    def config(self) -> dict:
        """JSON-able description, stored in model cards."""
        return {"name": self.name, "N": self.N, **self._params()}

    @abstractmethod
    def _params(self) -> dict: ...


class ReverseSDE:
    """``dx = [f - g^2 score] dt + g dw_bar`` (or the ODE with ``g^2/2`` and no noise)."""

    def __init__(self, forward: SDE, score_fn, probability_flow: bool = False) -> None:
        self.forward, self.score_fn, self.probability_flow = forward, score_fn, probability_flow

    def sde(self, x: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        drift, diffusion = self.forward.sde(x, t)
        g2 = _bcast(diffusion**2, x)
        score = self.score_fn(x, t)
        factor = 0.5 if self.probability_flow else 1.0
        drift = drift - g2 * score * factor
        return drift, torch.zeros_like(diffusion) if self.probability_flow else diffusion

    def discretize(self, x: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        f, G = self.forward.discretize(x, t)
        score = self.score_fn(x, t)
        factor = 0.5 if self.probability_flow else 1.0
        rev_f = f - _bcast(G**2, x) * score * factor
        return rev_f, torch.zeros_like(G) if self.probability_flow else G


class VESDE(SDE):
    """Variance exploding: ``sigma(t) = sigma_min (sigma_max / sigma_min)^t`` (NCSN / SMLD)."""

    name = "ve"

    def __init__(self, sigma_min: float = 0.01, sigma_max: float = 50.0, N: int = 1000) -> None:
        super().__init__(N)
        self.sigma_min, self.sigma_max = float(sigma_min), float(sigma_max)
        self._log_ratio = math.log(self.sigma_max / self.sigma_min)

    def alpha(self, t: Tensor) -> Tensor:
        return torch.ones_like(t)

    def sigma(self, t: Tensor) -> Tensor:
        return self.sigma_min * torch.exp(t * self._log_ratio)

    def sde(self, x: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        return torch.zeros_like(x), self.sigma(t) * math.sqrt(2 * self._log_ratio)

    def prior_std(self) -> float:
        return self.sigma_max

    def discrete_sigmas(self, device=None) -> Tensor:
        return torch.exp(torch.linspace(math.log(self.sigma_min), math.log(self.sigma_max), self.N, device=device))

    def discretize(self, x: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """SMLD: ``x_i = x_{i-1} + sqrt(sigma_i^2 - sigma_{i-1}^2) z``."""
        timestep = (t * (self.N - 1) / self.T).round().long()
        sigmas = self.discrete_sigmas(t.device).to(t.dtype)
        sigma = sigmas[timestep]
        prev = torch.where(timestep == 0, torch.zeros_like(t), sigmas[(timestep - 1).clamp(min=0)])
        return torch.zeros_like(x), torch.sqrt(sigma**2 - prev**2)

    def _params(self) -> dict:
        return {"sigma_min": self.sigma_min, "sigma_max": self.sigma_max}


class VPSDE(SDE):
    """Variance preserving: ``beta(t) = beta_min + t (beta_max - beta_min)`` (DDPM)."""

    name = "vp"

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0, N: int = 1000) -> None:
        super().__init__(N)
        self.beta_0, self.beta_1 = float(beta_min), float(beta_max)

    def beta(self, t: Tensor) -> Tensor:
        return self.beta_0 + t * (self.beta_1 - self.beta_0)

    def _log_mean_coeff(self, t: Tensor) -> Tensor:
        return -0.25 * t**2 * (self.beta_1 - self.beta_0) - 0.5 * t * self.beta_0

    def alpha(self, t: Tensor) -> Tensor:
        return torch.exp(self._log_mean_coeff(t))

    def sigma(self, t: Tensor) -> Tensor:
        return torch.sqrt(-torch.expm1(2.0 * self._log_mean_coeff(t)))

    def sde(self, x: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        beta = self.beta(t)
        return -0.5 * _bcast(beta, x) * x, torch.sqrt(beta)

    def prior_std(self) -> float:
        return 1.0

    def discrete_betas(self, device=None) -> Tensor:
        return torch.linspace(self.beta_0 / self.N, self.beta_1 / self.N, self.N, device=device)

    def discretize(self, x: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """DDPM: ``x_i = sqrt(1 - beta_i) x_{i-1} + sqrt(beta_i) z``."""
        timestep = (t * (self.N - 1) / self.T).round().long()
        beta = self.discrete_betas(t.device).to(t.dtype)[timestep]
        f = _bcast(torch.sqrt(1.0 - beta), x) * x - x
        return f, torch.sqrt(beta)

    def _params(self) -> dict:
        return {"beta_min": self.beta_0, "beta_max": self.beta_1}


class SubVPSDE(VPSDE):
    """Sub-VP: VP drift with diffusion ``beta(t) (1 - exp(-2 int beta))``; variance below VP's."""

    name = "subvp"

    def sigma(self, t: Tensor) -> Tensor:
        return -torch.expm1(2.0 * self._log_mean_coeff(t))

    def sde(self, x: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        beta = self.beta(t)
        discount = -torch.expm1(-2 * self.beta_0 * t - (self.beta_1 - self.beta_0) * t**2)
        return -0.5 * _bcast(beta, x) * x, torch.sqrt(beta * discount)

    def discretize(self, x: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        return SDE.discretize(self, x, t)


SDES: dict[str, type[SDE]] = {"ve": VESDE, "vp": VPSDE, "subvp": SubVPSDE}


def measurement_time(sde: SDE, level: float) -> float:
    """The time ``t*`` at which the forward process's noise ``sigma_t / alpha_t`` equals ``level`` (model units).

    Where a noisy measurement ``y = x + level n`` sits on the diffusion: ``alpha_t* y`` is a draw
    of ``x_t*``. ``sigma / alpha`` increases with ``t`` for every SDE here, so bisection on
    ``[eps, T]``; ``level`` beyond the prior's range gives ``T``.
    """
    if not level > 0:
        raise ValueError(f"the measurement noise level must be positive, got {level}")
    lo, hi = float(sde.eps), float(sde.T)
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        t = torch.tensor([mid], dtype=torch.float64)
        ratio = float(sde.sigma(t) / sde.alpha(t))
        lo, hi = (mid, hi) if ratio < level else (lo, mid)
    return 0.5 * (lo + hi)


def sde_from_config(config: dict) -> SDE:
    """Rebuild an SDE from :meth:`SDE.config` (as stored in a model card)."""
    config = dict(config)
    name = config.pop("name")
    if name not in SDES:
        raise ValueError(f"unknown SDE {name!r}; expected one of {sorted(SDES)}")
    return SDES[name](**config)
