"""CT reconstruction task: parallel-beam sinograms + a score prior of windowed HU slices.

Forward model: :class:`~scorerecon.modalities.ct.radon.ParallelBeamProjector` on per-pixel
attenuation ``mu * pixel_size`` (the physical line integrals ``-log(I / I0)``). The CT prior was
trained on HU clamped to ``[-1000, 400]`` and mapped to ``[-1, 1]`` (its card's
``data.normalization``), so ``HU = a_h m + b_h`` and ``mu_px = mu_w px (1 + HU / 1000)`` make the
physical image an affine function ``a m + b`` of the model state; the task solves the equivalent
linear problem ``c A m = c (y - b A 1) / a`` with ``c = 1 / ||A||`` (power iteration), so the
guidance sees a unit-norm operator whatever the number of views
(:class:`~scorerecon.pipelines.tasks.ModelSpaceOperator`).

HU above 400 (bone) lies outside the prior's training range; the state may leave ``[-1, 1]`` and
data consistency pulls it there, but the prior does not model bone contrast. Metrics follow
docs/conventions.md section 3 (windowed ``[-1000, 400]`` HU -> ``[0, 1]``, data range 1), where that
saturates anyway.

Sinograms are simulated noise-free from real HU slices with the same projector (the project has
no raw CT data, see ``shared/data/README.md``): :func:`simulate_sinogram`. Geometries follow
docs/conventions.md: sparse view = ``N`` views uniform over ``[0, 180)``, limited angle = a contiguous arc
at one view per degree (:func:`ct_geometry`).
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import torch

from scorerecon.modalities.ct.baselines import fbp_recon, sart_recon, tv_recon
from scorerecon.modalities.ct.geometry import ParallelBeamGeometry, default_n_det
from scorerecon.modalities.ct.radon import ParallelBeamProjector
from scorerecon.modalities.ct.units import MU_WATER_PER_MM, hu_to_mu, mu_to_hu
from scorerecon.pipelines.tasks import (
    ModelSpaceOperator,
    Problem,
    Reconstruction,
    affine_from_normalization,
    intensity_mode,
)
from scorerecon.pipelines.tasks import reconstruct as _reconstruct
from scorerecon.pipelines.tasks.grid import resample_centred

Tensor = torch.Tensor

__all__ = ["CT_BASELINES", "ct_baselines", "ct_geometry", "ct_problem", "reconstruct_ct", "simulate_sinogram"]

CT_BASELINES: tuple[str, ...] = ("fbp", "sart", "tv")

#: CT-specific solver settings. DPS step chosen on head-CT TRAINING slice z=30 (2x2-averaged to
#: 128^2, 60 views, 20 NFE) from {0.1, 0.3, 1.0}: 9.3 / 11.2 / 7.0 dB -- DPS with this few steps
#: does not converge on the ill-conditioned Radon operator (the paper runs 1000 steps).
CT_SOLVER_DEFAULTS: dict[str, dict[str, Any]] = {"dps": {"step_size": 0.3}}

# one projector per geometry (and ray sampling): its system matrix and operator norm are cached on it
_PROJECTORS: dict[tuple[ParallelBeamGeometry, int | None], ParallelBeamProjector] = {}


def _projector(geometry: ParallelBeamGeometry, n_samples: int | None = None) -> ParallelBeamProjector:
    key = (geometry, n_samples)
    if key not in _PROJECTORS:
        _PROJECTORS[key] = ParallelBeamProjector(geometry, n_samples=n_samples)
    return _PROJECTORS[key]


def ct_geometry(image_size: int, views: int | None = None, arc_deg: float | None = None) -> ParallelBeamGeometry:
    """Sparse-view (``views`` over ``[0, 180)``) or limited-angle (``arc_deg``, 1 view/degree) geometry."""
    if (views is None) == (arc_deg is None):
        raise ValueError("give exactly one of views (sparse view) or arc_deg (limited angle)")
    if views is not None:
        if int(views) < 1:
            raise ValueError("views must be >= 1")
        return ParallelBeamGeometry.sparse_view(int(image_size), int(views))
    if not 0 < float(arc_deg) <= 180:
        raise ValueError("arc_deg must lie in (0, 180]")
    return ParallelBeamGeometry.limited_angle(int(image_size), float(arc_deg))


def simulate_sinogram(hu: Tensor, geometry: ParallelBeamGeometry, pixel_size_mm: float) -> Tensor:
    """Noise-free line integrals ``(B, 1, n_angles, n_det)`` of HU slices ``(B, N, N)``."""
    hu = torch.as_tensor(hu, dtype=torch.float32)
    if hu.ndim == 2:
        hu = hu[None]
    return _projector(geometry).A(hu_to_mu(hu, pixel_size_mm)[:, None])


def _input_normalization(y: Tensor, geometry: ParallelBeamGeometry, pixel_size_mm: float,
                         normalization: dict[str, Any]) -> dict[str, Any]:
    """A non-``fixed`` card's percentiles resolved on the FBP image of this input (HU)."""
    lo_q, hi_q = (float(q) / 100.0 for q in (normalization.get("percentiles") or (0.5, 99.5)))
    hu = mu_to_hu(fbp_recon(y, geometry), pixel_size_mm).flatten().float()
    hu = hu[:: hu.numel() // 16_000_000 + 1]
    lo, hi = float(torch.quantile(hu, lo_q)), float(torch.quantile(hu, hi_q))
    return {"values": [lo, max(hi, lo + 1e-6)], "range": list(normalization.get("range", (-1.0, 1.0))),
            "of": "FBP image of the input"}


def ct_problem(sinogram: Tensor, geometry: ParallelBeamGeometry, pixel_size_mm: float,
               normalization: dict[str, Any], dagger_iter: int = 30, grid: int | None = None) -> Problem:
    """The model-space problem for line integrals ``(B, 1, n_angles, n_det)``.

    ``normalization`` is the CT prior's ``data.normalization`` (HU ``values`` -> ``range``); by
    :func:`~scorerecon.pipelines.tasks.intensity_mode` a ``fixed`` window (HU are physical) is
    used as it is and any other card is resolved on the input's FBP image.
    ``dagger_iter`` bounds the CG iterations of the least-squares projection (``dc``).
    ``grid`` ``N'``: reconstruct on ``N' x N'`` pixels of ``N p / N'`` mm over the same field of view
    (the prior's pixel size, :mod:`scorerecon.pipelines.tasks.grid`): the projector of that grid
    keeps the measured detector bins and angles, so it predicts the sinogram as measured; images
    in and out of the problem stay on the input's ``N x N`` grid.
    """
    y = torch.as_tensor(sinogram, dtype=torch.float32)
    if y.ndim == 3:
        y = y[:, None]
    if y.ndim != 4 or tuple(y.shape[-2:]) != geometry.sinogram_shape:
        raise ValueError(f"expected sinograms (B, 1, {geometry.n_angles}, {geometry.n_det}), got {tuple(y.shape)}")
    intensity = intensity_mode(normalization)
    if intensity == "auto":
        normalization = _input_normalization(y, geometry, pixel_size_mm, normalization)
    a_h, b_h = affine_from_normalization(normalization)
    n_in = geometry.image_size
    n = n_in if grid is None else int(grid)
    pixel = float(pixel_size_mm) * n_in / n
    if n == n_in:
        op = _projector(geometry)
    else:  # the grid's pixels, the measured bins: det_spacing in the grid's pixel units
        op = _projector(ParallelBeamGeometry(n, geometry.angles_deg, geometry.n_det,
                                             geometry.det_spacing * n / n_in, geometry.angular_step_deg,
                                             name=geometry.name), n_samples=default_n_det(n))
    k = MU_WATER_PER_MM * pixel
    a, b = k * a_h / 1000.0, k * (1.0 + b_h / 1000.0)
    c = 1.0 / op.operator_norm()
    shape = (int(y.shape[0]), 1, n, n)
    y_model = c * (y - b * op.A(torch.ones(shape))) / a
    info = {"geometry": geometry.config(), "pixel_size_mm": float(pixel_size_mm),
            "normalization": {"values": [float(v) for v in normalization["values"]],
                              "range": [float(v) for v in normalization["range"]]},
            "intensity": intensity, "operator_norm": 1.0 / c}
    if n != n_in:
        info["grid"] = {"shape": [n, n], "pixel_size_mm": pixel, "input_shape": [n_in, n_in],
                        "projector": op.geometry.config(), "back": "cubic spline about the centre pixel"}

    def to_physical(m: Tensor) -> Tensor:  # -> HU on the input's grid
        hu = a_h * m + b_h
        return hu if n == n_in else resample_centred(hu, (n_in, n_in), (pixel, pixel), (pixel_size_mm,) * 2)

    def from_physical(hu: Tensor) -> Tensor:
        hu = torch.as_tensor(hu, dtype=torch.float32).reshape(-1, 1, n_in, n_in)
        if n != n_in:
            hu = resample_centred(hu, (n, n), (pixel_size_mm,) * 2, (pixel, pixel))
        return (hu - b_h) / a_h

    problem = Problem(ModelSpaceOperator(op, scale=c, dagger_iter=dagger_iter), y_model, shape, to_physical, info,
                      solver_defaults=CT_SOLVER_DEFAULTS, from_physical=from_physical)

    def select(index: list[int]) -> Problem:  # the projector and the HU map are shared by every slice
        return replace(problem, y=y_model[index], shape=(len(index), *shape[1:]), slice_ids=None, select=None)

    problem.select = select
    return problem


def reconstruct_ct(sinogram: Tensor, geometry: ParallelBeamGeometry, pixel_size_mm: float, model: Any,
                   solver: str = "dds", nfe: int = 50, seed: int = 0, n_samples: int = 1,
                   device: torch.device | str = "cpu", **overrides: Any) -> Reconstruction:
    """Score-based CT reconstruction of a batch of slices; ``.image`` is HU ``(B, 1, N, N)``."""
    problem = ct_problem(sinogram, geometry, pixel_size_mm, model.card["data"]["normalization"])
    return _reconstruct(problem, model, solver, nfe=nfe, seed=seed, n_samples=n_samples, device=device, **overrides)


def ct_baselines(sinogram: Tensor, geometry: ParallelBeamGeometry, pixel_size_mm: float,
                 methods: tuple[str, ...] = CT_BASELINES, sart_iter: int = 2, tv_iter: int = 300
                 ) -> dict[str, tuple[Tensor, float]]:
    """Classical reconstructions ``{name: (HU image (B, 1, N, N), seconds)}``.

    ``fbp`` (ramp filter), ``sart`` (skimage ``iradon_sart``, ``sart_iter`` passes, non-negative)
    and ``tv`` (Chambolle-Pock TV least squares, the tuned lambda of
    :mod:`scorerecon.modalities.ct.baselines`).
    """
    y = torch.as_tensor(sinogram, dtype=torch.float32)
    out: dict[str, tuple[Tensor, float]] = {}
    for name in methods:
        start = time.perf_counter()
        if name == "fbp":
            mu = fbp_recon(y, geometry)
        elif name == "sart":
            mu = sart_recon(y, geometry, n_iter=sart_iter)
        elif name == "tv":
            mu = tv_recon(y, _projector(geometry), n_iter=tv_iter)
        else:
            raise ValueError(f"unknown CT baseline {name!r}; expected one of {list(CT_BASELINES)}")
        out[name] = (mu_to_hu(mu, pixel_size_mm), time.perf_counter() - start)
    return out
