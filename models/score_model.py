"""The one interface samplers see: an SDE plus a predictor of ``(eps, score, x0)`` at ``(x_t, t)``.

:class:`ScoreModel` is a protocol so that a trained network (:class:`NetworkScoreModel`) and a
closed-form score (the analytic Gaussian used in the tests) are interchangeable: samplers and
guidance never look inside.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from torch import nn

from scorerecon.models.parametrization import Prediction
from scorerecon.models.sde import SDE

Tensor = torch.Tensor

# Networks see ``t * TIME_SCALE`` so MONAI's sinusoidal embedding spans DDPM's 0..999 range.
TIME_SCALE = 999.0


@runtime_checkable
class ScoreModel(Protocol):
    """Anything that, given ``x_t`` and ``t``, predicts the clean signal / noise / score."""

    sde: SDE

    def predict(self, x: Tensor, t: Tensor, cond: Tensor | None = None) -> Prediction: ...


class NetworkScoreModel(nn.Module):
    """A network trained under one SDE and one parametrisation, seen as a :class:`ScoreModel`.

    ``cond`` (optional) is concatenated to ``x`` along channels: conditional tasks (pan-sharpening,
    super-resolution, low-light) feed their measurement this way.
    """

    def __init__(self, network: nn.Module, sde: SDE, parametrization: str = "eps") -> None:
        super().__init__()
        self.network, self.sde, self.parametrization = network, sde, parametrization

    def forward(self, x: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor:
        inputs = x if cond is None else torch.cat([x, cond.to(x.dtype)], dim=1)
        return self.network(inputs, t * TIME_SCALE)

    def predict(self, x: Tensor, t: Tensor, cond: Tensor | None = None) -> Prediction:
        t = t.to(x.dtype).expand(x.shape[0]) if t.ndim == 0 else t.to(x.dtype)
        out = self(x, t, cond)
        return Prediction(self.parametrization, out.to(x.dtype), x, self.sde.alpha(t), self.sde.sigma(t))
