"""A closed-form :class:`ScoreModel` for Gaussian data, used to test samplers and guidance.

For data ``x_0 ~ N(mu, Sigma)`` and any SDE of :mod:`scorerecon.models.sde` the marginal is
``p_t = N(alpha_t mu, alpha_t^2 Sigma + sigma_t^2 I)``, so its score is exact at every ``t``:
``grad log p_t(x) = -(alpha_t^2 Sigma + sigma_t^2 I)^{-1} (x - alpha_t mu)``. With the
eigendecomposition ``Sigma = U diag(lam) U^T`` the inverse is ``U diag(1/(alpha^2 lam +
sigma^2)) U^T``, exact and cheap for all t. Inputs of any shape ``(B, ...)`` are flattened to
``(B, d)``.
"""

from __future__ import annotations

import math

import torch

from scorerecon.models.parametrization import Prediction
from scorerecon.models.sde import SDE

Tensor = torch.Tensor


class AnalyticGaussianScoreModel:
    """Implements the ``ScoreModel`` protocol with the exact score of ``N(mu, Sigma)``."""

    def __init__(self, sde: SDE, mu: Tensor, cov: Tensor, kind: str = "eps") -> None:
        self.sde, self.kind = sde, kind
        self.mu = mu.double().flatten()
        self.cov = cov.double()
        lam, U = torch.linalg.eigh(self.cov)
        self.lam, self.U = lam.clamp_min(0.0), U
        self.calls = 0

    @property
    def dim(self) -> int:
        return self.mu.numel()

    def marginal_cov(self, t: float) -> Tensor:
        tt = torch.tensor([t], dtype=torch.float64)
        a, s = self.sde.alpha(tt)[0], self.sde.sigma(tt)[0]
        return a * a * self.cov + s * s * torch.eye(self.dim, dtype=torch.float64)

    def score(self, x: Tensor, t: Tensor) -> Tensor:
        shape = x.shape
        xf = x.reshape(shape[0], -1)
        U, lam = self.U.to(x), self.lam.to(x)
        a = self.sde.alpha(t).to(x)[:, None]
        s = self.sde.sigma(t).to(x)[:, None]
        centred = xf - a * self.mu.to(x)
        coeff = centred @ U  # (B, d) in the eigenbasis
        inv = 1.0 / (a * a * lam[None] + s * s)
        return (-(coeff * inv) @ U.T).reshape(shape)

    def predict(self, x: Tensor, t: Tensor, cond: Tensor | None = None) -> Prediction:
        self.calls += 1
        t = t.to(x.dtype).expand(x.shape[0]) if t.ndim == 0 else t.to(x.dtype)
        alpha, sigma = self.sde.alpha(t), self.sde.sigma(t)
        sigma_b = sigma.reshape(-1, *([1] * (x.ndim - 1)))
        out = sigma_b * self.score(x, t)  # sigma * score
        if self.kind == "score":
            return Prediction("score", out, x, alpha, sigma)
        return Prediction("eps", -out, x, alpha, sigma)

    def logpdf(self, x: Tensor, t: float) -> Tensor:
        """Exact log-density of ``p_t`` at ``x`` (per sample)."""
        tt = torch.tensor([t], dtype=torch.float64)
        a = self.sde.alpha(tt)[0]
        cov = self.marginal_cov(t)
        xf = x.reshape(x.shape[0], -1).double() - a * self.mu
        sol = torch.linalg.solve(cov, xf.T).T
        _, logdet = torch.linalg.slogdet(cov)
        return -0.5 * (self.dim * math.log(2 * math.pi) + logdet + (xf * sol).sum(1))

    def posterior(self, A: Tensor, y: Tensor, noise_std: float) -> tuple[Tensor, Tensor]:
        """Mean and covariance of ``x | y`` for ``y = A x + n``, ``n ~ N(0, noise_std^2 I)``.

        Written in the form that stays valid for ``noise_std = 0``:
        ``K = Sigma A^T (A Sigma A^T + s^2 I)^+``, mean ``mu + K (y - A mu)``, cov ``Sigma - K A Sigma``.
        """
        A, y = A.double(), y.double().flatten()
        S = A @ self.cov @ A.T + noise_std**2 * torch.eye(A.shape[0], dtype=torch.float64)
        K = self.cov @ A.T @ torch.linalg.pinv(S)
        return self.mu + K @ (y - A @ self.mu), self.cov - K @ A @ self.cov


def correlated_cov(d: int, seed: int = 0, low: float = 0.2, high: float = 1.5) -> Tensor:
    """A random dense covariance with eigenvalues spread over ``[low, high]``."""
    g = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    lam = torch.linspace(low, high, d, dtype=torch.float64)
    return Q @ torch.diag(lam) @ Q.T
