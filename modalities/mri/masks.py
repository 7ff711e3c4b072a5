"""Cartesian undersampling masks, all seeded: random 1D, equispaced 1D, 2D Poisson-disc.

Orientation: masks are ``(H, W)`` float32 tensors over centred k-space (``fft2c`` convention of
:mod:`.operators`). The 1D masks select whole **columns** (the last axis ``kx`` is the
phase-encode direction, fastMRI's convention: readout along ``H`` is fully sampled); every row of
a 1D mask is identical.

1D masks (Zbontar et al., "fastMRI: An open dataset and benchmarks for accelerated MRI", 2018;
``fastmri/data/subsample.py``) -- reimplemented here (~20 lines each) because the ``fastmri``
package is not a dependency and its masks are numpy/seed-state based; the arithmetic follows it:

* :func:`random_1d_mask` (fastMRI ``RandomMaskFunc``): ``round(W * cf)`` central columns plus
  random outer columns. fastMRI keeps each outer column with probability
  ``(W / R - n_low) / (W - n_low)`` (``exact=False``), so only the *expected* acceleration is
  ``R``: for ``W ~ 200`` the realised one ranges over roughly ``0.8 R .. 1.1 R`` between seeds.
  The default ``exact=True`` instead draws exactly ``round(W / R) - n_low`` outer columns
  uniformly without replacement -- same distribution of positions, realised acceleration ``R``
  up to rounding -- so benchmark tables compare like with like.
* :func:`equispaced_1d_mask` (fastMRI ``EquispacedMaskFractionFunc``): the central block plus
  columns at a spacing adjusted so the total is ``W / R``, starting at a seeded random offset.
* Centre fractions follow docs/conventions.md section 3: ``0.08`` for ``R = 4`` and ``0.04`` for
  ``R = 8`` (fastMRI's pairing, i.e. ``0.32 / R``; :func:`default_center_fraction`).

2D mask: :func:`poisson_disc_mask` wraps ``sigpy.mri.poisson`` (variable-density Poisson-disc,
Lustig et al. / Vasanawala et al.) with a fully sampled ``calib`` box at the centre.

Masks of acquired data: :func:`sampling_mask` reads the pattern off the k-space itself (a sample
was acquired where any coil of any slice holds a non-zero value: unacquired samples of Cartesian
data are stored as exact zeros, as BART, fastMRI and twix write them), and
:func:`central_density` says how densely the centre was sampled (what calibration can use when
there is no fully sampled block, :func:`scorerecon.modalities.mri.coils.jsense_maps`).

The same ``seed`` always gives the same mask (numpy ``RandomState`` / sigpy's own seed), on any
machine; the mask is then moved to whatever device the operator runs on.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import sigpy.mri
import torch

Tensor = torch.Tensor

__all__ = [
    "acceleration_of",
    "center_columns",
    "central_density",
    "default_center_fraction",
    "equispaced_1d_mask",
    "make_mask",
    "poisson_disc_mask",
    "random_1d_mask",
    "sampling_mask",
]


def default_center_fraction(acceleration: float) -> float:
    """fastMRI's pairing: ``0.08`` at ``R = 4``, ``0.04`` at ``R = 8`` (``0.32 / R`` in general)."""
    return 0.32 / float(acceleration)


def center_columns(n_cols: int, center_fraction: float) -> slice:
    """The fully sampled central columns of a 1D mask (fastMRI's placement, contains ``n_cols // 2``)."""
    n_low = int(round(n_cols * center_fraction))
    pad = (n_cols - n_low + 1) // 2
    return slice(pad, pad + n_low)


def _expand(cols: np.ndarray, shape: tuple[int, int]) -> Tensor:
    return torch.from_numpy(np.broadcast_to(cols.astype(np.float32), shape).copy())


def random_1d_mask(shape: tuple[int, int], acceleration: float, center_fraction: float | None = None,
                   seed: int = 0, exact: bool = True) -> Tensor:
    """fastMRI random 1D column mask ``(H, W)``: central block + random outer columns.

    ``exact=True``: exactly ``round(W / R)`` columns in total; ``exact=False``: fastMRI's
    Bernoulli draw (rate ``1/R`` in expectation only).
    """
    h, w = (int(s) for s in shape)
    cf = default_center_fraction(acceleration) if center_fraction is None else float(center_fraction)
    centre = center_columns(w, cf)
    n_low = centre.stop - centre.start
    prob = (w / float(acceleration) - n_low) / (w - n_low)
    if not 0.0 <= prob <= 1.0:
        raise ValueError(f"acceleration {acceleration} incompatible with centre fraction {cf}")
    rng = np.random.RandomState(seed)
    if exact:
        outer = np.setdiff1d(np.arange(w), np.arange(centre.start, centre.stop))
        n_outer = max(0, int(round(w / float(acceleration))) - n_low)
        cols = np.zeros(w, dtype=bool)
        cols[rng.choice(outer, size=n_outer, replace=False)] = True
    else:
        cols = rng.uniform(size=w) < prob
    cols[centre] = True
    return _expand(cols, (h, w))


def equispaced_1d_mask(shape: tuple[int, int], acceleration: float, center_fraction: float | None = None,
                       seed: int = 0) -> Tensor:
    """fastMRI equispaced 1D mask ``(H, W)`` (``EquispacedMaskFractionFunc``): total rate ``1/R``."""
    h, w = (int(s) for s in shape)
    r = float(acceleration)
    cf = default_center_fraction(r) if center_fraction is None else float(center_fraction)
    centre = center_columns(w, cf)
    n_low = centre.stop - centre.start
    if n_low * r >= w:
        raise ValueError(f"acceleration {r} incompatible with centre fraction {cf}")
    adjusted = (r * (n_low - w)) / (n_low * r - w)
    rng = np.random.RandomState(seed)
    offset = rng.randint(0, max(1, round(adjusted)))
    cols = np.zeros(w, dtype=bool)
    cols[np.around(np.arange(offset, w - 1, adjusted)).astype(np.int64)] = True
    cols[centre] = True
    return _expand(cols, (h, w))


def poisson_disc_mask(shape: tuple[int, int], acceleration: float, calib: tuple[int, int] = (24, 24),
                      seed: int = 0, crop_corner: bool = True) -> Tensor:
    """Variable-density 2D Poisson-disc mask ``(H, W)`` via ``sigpy.mri.poisson`` (centre ``calib`` full)."""
    h, w = (int(s) for s in shape)
    calib = (min(int(calib[0]), h), min(int(calib[1]), w))
    mask = sigpy.mri.poisson((h, w), float(acceleration), calib=calib, dtype=np.float32,
                             crop_corner=crop_corner, seed=int(seed))
    return torch.from_numpy(np.ascontiguousarray(mask.real, dtype=np.float32))


def make_mask(kind: str, shape: tuple[int, int], acceleration: float, seed: int = 0,
              center_fraction: float | None = None, calib: tuple[int, int] = (24, 24),
              exact: bool = True) -> Tensor:
    """Dispatch by name: ``"random1d"``, ``"equispaced1d"`` or ``"poisson2d"``."""
    if kind in ("random1d", "random"):
        return random_1d_mask(shape, acceleration, center_fraction, seed, exact)
    if kind in ("equispaced1d", "equispaced"):
        return equispaced_1d_mask(shape, acceleration, center_fraction, seed)
    if kind in ("poisson2d", "poisson"):
        return poisson_disc_mask(shape, acceleration, calib, seed)
    raise ValueError(f"unknown mask kind {kind!r}: random1d | equispaced1d | poisson2d")


def acceleration_of(mask: Tensor) -> float:
    """Realised acceleration ``numel / n_sampled`` of a binary mask."""
    mask = torch.as_tensor(mask)
    return float(mask.numel() / mask.count_nonzero().clamp_min(1))


def sampling_mask(kspace: Any) -> Tensor:
    """The sampling pattern ``(H, W)`` float32 of acquired k-space ``(..., H, W)`` (numpy or torch).

    1 where any coil / slice holds a non-zero sample, 0 where every one is exactly zero (not
    acquired).
    """
    k = torch.as_tensor(np.asarray(kspace)) if not isinstance(kspace, torch.Tensor) else kspace
    if k.ndim < 2:
        raise ValueError(f"expected k-space (..., H, W), got shape {tuple(k.shape)}")
    sampled = (k.abs() > 0).reshape(-1, *k.shape[-2:]).any(dim=0)
    return sampled.to(torch.float32).cpu()


def central_density(mask: Tensor, width: int) -> float:
    """Fraction of sampled entries in the centred ``width x width`` block of a mask ``(H, W)``.

    The block contains the DC sample ``(H // 2, W // 2)`` and is clipped to the matrix.
    """
    m = torch.as_tensor(mask)
    h, w = m.shape[-2:]
    bh, bw = min(int(width), h), min(int(width), w)
    r0, c0 = h // 2 - bh // 2, w // 2 - bw // 2
    return float((m[..., r0:r0 + bh, c0:c0 + bw] > 0).float().mean())
