"""Hounsfield units, linear attenuation and the display/metric window (docs/conventions.md section 3).

Choice of units: the projector works on **per-pixel attenuation** ``mu * pixel_size``
(dimensionless), so line integrals are the physical ``-log(I / I0)`` the Poisson model needs.
``mu = mu_water * (1 + HU / 1000)`` with ``mu_water = 0.0193 / mm`` (water at ~70 keV effective
energy, NIST XCOM ``mu/rho = 0.193 cm^2/g``); HU below ``-1000`` (the scanner's ``-1024`` padding
outside the field of view) is clamped to ``-1000`` so ``mu >= 0``. Metrics and networks use the
windowed image: HU clamped to ``[-1000, 400]`` and mapped to ``[0, 1]``
(:func:`scorerecon.modalities.metrics.window_hu` for numpy, :func:`window` here for torch).
"""

from __future__ import annotations

import torch

Tensor = torch.Tensor

__all__ = ["HU_WINDOW", "MU_WATER_PER_MM", "hu_to_mu", "mu_to_hu", "unwindow", "window"]

MU_WATER_PER_MM = 0.0193
HU_WINDOW: tuple[float, float] = (-1000.0, 400.0)


def hu_to_mu(hu: Tensor, pixel_size_mm: float = 1.0, mu_water: float = MU_WATER_PER_MM) -> Tensor:
    """HU -> per-pixel attenuation ``mu_water (1 + HU/1000) * pixel_size`` (HU clamped at -1000)."""
    return mu_water * (1.0 + hu.clamp_min(-1000.0) / 1000.0) * pixel_size_mm


def mu_to_hu(mu: Tensor, pixel_size_mm: float = 1.0, mu_water: float = MU_WATER_PER_MM) -> Tensor:
    """Inverse of :func:`hu_to_mu` (no clamping)."""
    return (mu / (pixel_size_mm * mu_water) - 1.0) * 1000.0


def window(hu: Tensor, hu_window: tuple[float, float] = HU_WINDOW) -> Tensor:
    """Clamp HU to ``hu_window`` and map linearly to ``[0, 1]`` (torch, any device)."""
    lo, hi = hu_window
    return ((hu - lo) / (hi - lo)).clamp(0.0, 1.0)


def unwindow(x: Tensor, hu_window: tuple[float, float] = HU_WINDOW) -> Tensor:
    """``[0, 1]`` -> HU (linear; values outside the window are not recovered)."""
    lo, hi = hu_window
    return x * (hi - lo) + lo
