"""What the network predicts, and the one place that converts between predictions.

With ``x_t = alpha x_0 + sigma eps`` (see :mod:`scorerecon.models.sde`), a network can predict

* ``eps``   — the noise (DDPM's choice),
* ``score`` — ``grad log p_t(x_t) = -eps / sigma`` (NCSN's choice; trained as ``sigma * score``
  so its scale is O(1)),
* ``x0``    — the clean signal,
* ``v``     — ``alpha eps - sigma x_0`` (velocity; well conditioned at both ends).

All four carry the same information given ``x_t`` and ``(alpha, sigma)``; samplers ask for the
score or for ``x0``/``eps`` through :class:`Prediction`, so any network works with any sampler.
For ``v`` with ``alpha^2 + sigma^2 != 1`` (VE, sub-VP) the general inversion below is used.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

Tensor = torch.Tensor
PARAMETRIZATIONS = ("eps", "score", "x0", "v")


def _b(value: Tensor, like: Tensor) -> Tensor:
    return value.reshape(-1, *([1] * (like.ndim - 1)))


@dataclass
class Prediction:
    """A network output interpreted under its parametrisation at ``(x_t, alpha, sigma)``."""

    kind: str
    output: Tensor
    x_t: Tensor
    alpha: Tensor
    sigma: Tensor

    def __post_init__(self) -> None:
        if self.kind not in PARAMETRIZATIONS:
            raise ValueError(f"unknown parametrisation {self.kind!r}; expected one of {PARAMETRIZATIONS}")

    @property
    def eps(self) -> Tensor:
        a, s, x, out = _b(self.alpha, self.x_t), _b(self.sigma, self.x_t), self.x_t, self.output
        if self.kind == "eps":
            return out
        if self.kind == "score":  # network output is sigma * score
            return -out
        if self.kind == "x0":
            return (x - a * out) / s
        return (a * out + s * x) / (a * a + s * s)

    @property
    def x0(self) -> Tensor:
        a, s, x, out = _b(self.alpha, self.x_t), _b(self.sigma, self.x_t), self.x_t, self.output
        if self.kind == "x0":
            return out
        if self.kind == "v":
            return (a * x - s * out) / (a * a + s * s)
        return (x - s * self.eps) / a

    @property
    def score(self) -> Tensor:
        return -self.eps / _b(self.sigma, self.x_t)


def training_target(kind: str, x0: Tensor, noise: Tensor, alpha: Tensor, sigma: Tensor) -> Tensor:
    """The regression target of denoising score matching for each parametrisation."""
    if kind == "eps":
        return noise
    if kind == "score":
        return -noise  # sigma * score of the perturbation kernel
    if kind == "x0":
        return x0
    if kind == "v":
        return _b(alpha, x0) * noise - _b(sigma, x0) * x0
    raise ValueError(f"unknown parametrisation {kind!r}; expected one of {PARAMETRIZATIONS}")


def loss_weight(kind: str, alpha: Tensor, sigma: Tensor) -> Tensor:
    """Per-sample weight making each objective equal to ``sigma^2``-weighted DSM (Song 2021).

    ``sigma^2 |score - target_score|^2 = |eps_hat - eps|^2``, so eps/score need weight 1;
    an x0 error maps to an eps error times ``alpha/sigma`` and a v error to one times
    ``alpha/(alpha^2 + sigma^2)``; squaring gives the weights (x0's clamped near ``t = 0``).
    """
    if kind in ("eps", "score"):
        return torch.ones_like(sigma)
    if kind == "x0":
        return torch.clamp((alpha / sigma) ** 2, max=1e4)
    if kind == "v":
        return (alpha / (alpha**2 + sigma**2)) ** 2
    raise ValueError(f"unknown parametrisation {kind!r}; expected one of {PARAMETRIZATIONS}")
