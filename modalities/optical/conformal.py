"""Split conformal calibration of a posterior's predictive interval (normalised residual scores).

A diffusion posterior's spread (the std over a few samples of a small, briefly trained model) is
a shape, not a calibrated scale: its raw ``mean +- 1.645 std`` covered 75 % of held-out cloud
pixels instead of 90 %. Split conformal prediction (Vovk et al. 2005; Lei et al., JASA 2018;
Angelopoulos & Bates 2021, Sec. 2.3 "conformalized uncertainty scalars") fixes the scale on data
the interval will not be judged on: with scores ``s_i = |y_i - mean_i| / std_i`` over ``n``
calibration values, ``q`` = the ``ceil((n + 1) level) / n`` empirical quantile of the scores, the
interval ``mean +- q std`` covers a new exchangeable value with probability >= ``level``. Here the
values are pixels x bands inside cloud masks on the model's *training* area and dates (held-out
areas, dates and cloud shapes stay untouched), one ``q`` per band and depth inside the cloud
(group-conditional / Mondrian conformal: the bands' errors scale differently, and errors deep
inside a large cloud outgrow the posterior std more than near its edge).

Caveats stated, not hidden: pixels of one scene are spatially correlated, not exchangeable, so
the guarantee is approximate; and the calibration area was seen in training, where the model's
errors are smaller than on unseen areas, which biases ``q`` low -- the benchmark measures the
coverage that results on held-out areas.

Written here rather than taken from ``crepes`` (whose ``ConformalRegressor(sigmas=..., bins=...)``
applies the same rule): the rule is one quantile, and its result must be stored with the
checkpoint (:class:`IntervalCalibration`, JSON) and applied in the pipelines without the
calibration set.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["IntervalCalibration", "conformal_quantile", "distance_groups", "normalised_scores"]

_TINY = 1e-12


def normalised_scores(reference: np.ndarray, mean: np.ndarray, std: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``|reference - mean| / std`` at the ``mask`` pixels, ``(B, n_pixels)`` (std floored at 1e-12)."""
    m = np.asarray(mask, bool)
    diff = np.abs(np.asarray(reference, np.float64) - np.asarray(mean, np.float64))[:, m]
    return diff / np.maximum(np.asarray(std, np.float64)[:, m], _TINY)


def conformal_quantile(scores: np.ndarray, level: float) -> float:
    """The split-conformal quantile: the ``ceil((n + 1) level)``-th smallest of ``n`` scores.

    ``inf`` when ``n`` is too small for the level (``ceil((n + 1) level) > n``).
    """
    s = np.sort(np.asarray(scores, np.float64).ravel())
    k = math.ceil((s.size + 1) * float(level))
    return float("inf") if k > s.size or s.size == 0 else float(s[k - 1])


def distance_groups(mask: np.ndarray, edges: list[float]) -> np.ndarray:
    """Group of every ``mask`` pixel by its distance (px) to the nearest clear pixel: ``digitize(d, edges)``.

    A mask without a clear pixel puts every pixel in the last (deepest) group.
    """
    from scipy import ndimage

    m = np.asarray(mask, bool)
    d = np.full(int(m.sum()), np.inf) if m.all() else ndimage.distance_transform_edt(m)[m]
    return np.digitize(d, np.asarray(edges, np.float64))


@dataclass
class IntervalCalibration:
    """Interval factors ``q[band][group]`` for ``mean +- q std`` at ``level``, and where they came from.

    Groups are ranges of the distance to the nearest clear pixel (``edges``, px): errors deep
    inside a large cloud are larger relative to the posterior std than near its edge, so each
    depth gets its own quantile (group-conditional, "Mondrian" conformal). ``settings`` holds
    the sampling the scores were computed with (samples, NFE, feather radius): the factors hold
    for that sampling only, since the std of fewer samples is noisier.
    """

    level: float
    q: list[list[float]]
    edges: list[float]
    n: int
    settings: dict[str, Any] = field(default_factory=dict)
    source: str = ""

    @classmethod
    def fit(cls, scores: np.ndarray, groups: np.ndarray, level: float, edges: list[float],
            settings: dict[str, Any] | None = None, source: str = "") -> IntervalCalibration:
        """From scores ``(B, n)`` (concatenated :func:`normalised_scores`) and their groups ``(n,)``."""
        scores, groups = np.asarray(scores, np.float64), np.asarray(groups)
        q = [[conformal_quantile(row[groups == g], level) for g in range(len(edges) + 1)] for row in scores]
        return cls(float(level), q, [float(e) for e in edges], int(scores.shape[1]), dict(settings or {}), source)

    def half_width(self, std: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """``q[b][group] std`` inside ``mask``, 0 outside: the calibrated interval's half-width ``(B, H, W)``."""
        q = np.asarray(self.q, np.float64)
        std = np.asarray(std, np.float64)
        if q.shape[0] != std.shape[0]:
            raise ValueError(f"calibration has {q.shape[0]} bands, the std map {std.shape[0]}")
        m = np.asarray(mask, bool)
        out = np.zeros_like(std)
        out[:, m] = q[:, distance_groups(m, self.edges)] * std[:, m]
        return out

    def mismatches(self, **settings: Any) -> list[str]:
        """The settings that differ from the calibration's (empty when the factors apply)."""
        return [f"{k}={v} (calibrated for {self.settings[k]})" for k, v in settings.items()
                if k in self.settings and self.settings[k] != v]

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(asdict(self), indent=1) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> IntervalCalibration:
        from scorerecon.errors import InputError

        try:
            data = json.loads(Path(path).read_text())
            return cls(float(data["level"]), [[float(v) for v in row] for row in data["q"]],
                       [float(e) for e in data["edges"]], int(data["n"]), dict(data.get("settings", {})),
                       str(data.get("source", "")))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise InputError(path, f"not a readable interval calibration ({type(exc).__name__}: {exc})") from None
