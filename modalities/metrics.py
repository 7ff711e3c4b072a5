"""Full-reference image-quality metrics with the conventions of ``docs/conventions.md`` section 3.

MRI (fastMRI conventions, Zbontar et al. 2018, ``fastmri/evaluate.py``)
    * images are **magnitudes**: complex input is reduced with ``abs`` first;
    * **PSNR** uses ``data_range = max(reference volume)`` -- one value for the whole volume, not
      per slice;
    * **SSIM** is computed **per slice** with scikit-image's ``structural_similarity`` (7x7 uniform
      window, ``K1=0.01, K2=0.03``, the same ``data_range`` as PSNR) and averaged over slices;
    * **NMSE** is ``||ref - est||^2 / ||ref||^2`` over the volume.

CT
    Metrics are taken on the **windowed** image: HU clamped to a stated window (default
    ``[-1000, 400]`` HU) and mapped linearly to ``[0, 1]``; the data range is then the fixed
    window width, i.e. ``1.0`` (not the max of the reference), so numbers are comparable across
    slices and methods. See :func:`ct_metrics`.

Implementation: PSNR and SSIM *are* scikit-image's ``peak_signal_noise_ratio`` and
``structural_similarity`` (fastMRI's reference code calls exactly these, so the definitions match
by construction); NMSE is one line of numpy with fastMRI's definition. torchmetrics is not used:
its SSIM defaults to an 11x11 Gaussian window, which is *not* the fastMRI convention.

Array layout: anything ``(..., H, W)`` (numpy or torch, real or complex). All leading dims are
flattened into a slice axis and the whole array is treated as **one volume** -- call the
functions once per volume/subject when you want per-volume numbers.

Remote-sensing metrics (SAM, ERGAS, Q2n, QNR) will join :func:`image_metrics` later; its return
value is a plain ``dict`` so new keys can be added without breaking callers.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

__all__ = [
    "as_magnitude_volume",
    "ct_metrics",
    "image_metrics",
    "nmse",
    "psnr",
    "ssim",
    "window_hu",
]

DEFAULT_HU_WINDOW: tuple[float, float] = (-1000.0, 400.0)


def as_magnitude_volume(image: Any) -> np.ndarray:
    """``(..., H, W)`` numpy/torch (real or complex) -> float64 ``(S, H, W)`` magnitude volume."""
    if hasattr(image, "detach"):  # torch tensor, on any device
        image = image.detach().cpu().numpy()
    arr = np.asarray(image)
    if np.iscomplexobj(arr):
        arr = np.abs(arr)
    arr = arr.astype(np.float64, copy=False)
    if arr.ndim < 2:
        raise ValueError(f"expected an image (..., H, W), got shape {arr.shape}")
    return arr.reshape(-1, *arr.shape[-2:])


def _pair(reference: Any, estimate: Any) -> tuple[np.ndarray, np.ndarray]:
    ref, est = as_magnitude_volume(reference), as_magnitude_volume(estimate)
    if ref.shape != est.shape:
        raise ValueError(f"reference {ref.shape} and estimate {est.shape} differ in shape")
    return ref, est


def _range(ref: np.ndarray, data_range: float | None) -> float:
    value = float(ref.max()) if data_range is None else float(data_range)
    if not value > 0:
        raise ValueError(f"data range must be > 0 (got {value}); pass data_range explicitly")
    return value


def psnr(reference: Any, estimate: Any, data_range: float | None = None) -> float:
    """PSNR in dB over the whole volume; ``data_range`` defaults to ``max(reference)`` (fastMRI)."""
    ref, est = _pair(reference, estimate)
    return float(peak_signal_noise_ratio(ref, est, data_range=_range(ref, data_range)))


def ssim(reference: Any, estimate: Any, data_range: float | None = None) -> float:
    """Mean over slices of skimage SSIM (7x7 uniform window); ``data_range`` = volume max by default."""
    ref, est = _pair(reference, estimate)
    dr = _range(ref, data_range)
    if min(ref.shape[-2:]) < 7:
        raise ValueError("SSIM with a 7x7 window needs slices of at least 7x7 pixels")
    return float(np.mean([structural_similarity(r, e, data_range=dr) for r, e in zip(ref, est, strict=True)]))


def nmse(reference: Any, estimate: Any) -> float:
    """Normalised MSE ``||ref - est||^2 / ||ref||^2`` (fastMRI)."""
    ref, est = _pair(reference, estimate)
    return float(np.linalg.norm(ref - est) ** 2 / np.linalg.norm(ref) ** 2)


def image_metrics(reference: Any, estimate: Any, data_range: float | None = None) -> dict[str, float]:
    """``{"psnr", "ssim", "nmse", "data_range"}`` for one volume (magnitude, fastMRI conventions).

    ``data_range=None`` means *max of the reference volume* (the MRI convention); pass ``1.0`` for
    images already normalised to ``[0, 1]`` (CT windows, natural images).
    """
    ref, est = _pair(reference, estimate)
    dr = _range(ref, data_range)
    return {"psnr": psnr(ref, est, dr), "ssim": ssim(ref, est, dr), "nmse": nmse(ref, est), "data_range": dr}


def window_hu(hu: Any, window: tuple[float, float] = DEFAULT_HU_WINDOW) -> np.ndarray:
    """Clamp HU to ``window = (lo, hi)`` and map linearly to ``[0, 1]`` (numpy float64)."""
    lo, hi = window
    if hasattr(hu, "detach"):
        hu = hu.detach().cpu().numpy()
    arr = np.asarray(hu)
    if np.iscomplexobj(arr):
        raise TypeError("HU images are real; got a complex array")
    arr = arr.astype(np.float64, copy=False)
    return np.clip((arr - lo) / (hi - lo), 0.0, 1.0)


def ct_metrics(reference_hu: Any, estimate_hu: Any,
               window: tuple[float, float] = DEFAULT_HU_WINDOW) -> dict[str, Any]:
    """CT metrics on the windowed ``[0, 1]`` images (data range 1.0); inputs in HU."""
    out = image_metrics(window_hu(reference_hu, window), window_hu(estimate_hu, window), data_range=1.0)
    out["window_hu"] = [float(window[0]), float(window[1])]
    return out
