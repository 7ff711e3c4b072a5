"""Wald's-protocol degradation (MTF-matched Gaussian blur + decimation), interpolation, pan synthesis.

Wald, Ranchin & Mangolini (PE&RS 1997) validate a fusion method at *reduced resolution*: both the
multispectral (MS) and the panchromatic (PAN) images are degraded by the resolution ratio ``r``,
the method is applied to the degraded pair, and its output is compared with the original MS,
which is then a true reference. The degradation filter must match the sensor's modulation
transfer function (Aiazzi et al., PE&RS 2006; Vivone et al., IEEE TGRS 2015): a Gaussian whose
frequency response equals the MTF gain ``G`` at the Nyquist frequency ``1 / (2 r)`` cycles/pixel
of the coarse grid. A Gaussian of standard deviation ``s`` pixels has response
``exp(-2 pi^2 s^2 f^2)``, so ``s = r sqrt(-2 ln G) / pi`` (:func:`mtf_sigma`). The blur is
scipy's ``gaussian_filter`` (reflect boundary, truncated at 4 sigma).

Grid phase. A coarse pixel ``j`` is centred on fine pixel ``phase + r j``. For Landsat-8 the
15 m pan grid starts half a pan pixel before the 30 m grid, so MS pixel centres fall on *odd*
pan pixels: ``phase = 1`` (:func:`grid_phase` reads it from the two geotransforms). Decimation
keeps ``x[phase::r]`` and interpolation evaluates the coarse image at ``(k - phase) / r``, so the
pixel centres of every pair this module produces coincide exactly; the Wald reduction of a 30 m
MS image uses the same ``phase = r // 2`` convention.

Block-aligned grids (Sentinel-2 10/20/60 m): a coarse pixel covers ``r x r`` fine pixels, so its
centre falls *between* fine pixels, at a half-integer phase (``(r - 1) / 2`` for a grid starting
at the block corner; :func:`grid_offset` reads any integer or half-integer offset from two
transforms). :func:`decimate` then takes the mean of the two fine pixels either side of each
coarse centre (per axis), a 2-tap filter of response ``cos(pi f)``; :func:`wald_degrade`
divides the Gaussian's Nyquist gain by that response at the coarse Nyquist, ``cos(pi / (2 r))``,
so the *total* degradation still has the band's MTF gain there. :func:`upsample` accepts the
same half-integer phases, one per axis when rows and columns differ.

Interpolation (:func:`upsample`) is cubic-spline interpolation (``scipy.ndimage.map_coordinates``,
order 3, mirror boundary), the "EXP" expansion of the pan-sharpening literature (the toolbox
uses a 23-tap polynomial kernel; both are cubic-order interpolators).

Back-projection (:func:`back_project`, Irani & Peleg 1991): ``f <- f + up(low - D f)`` makes a
fused image reproduce its low-resolution measurement when degraded by ``D`` (the Wald degradation
above); every pan-sharpening output here can be given it. No maintained library
offers MTF-matched Wald degradation with an explicit grid phase, hence these few functions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

__all__ = ["mtf_sigma", "mtf_blur", "decimate", "wald_degrade", "upsample", "back_project", "synthesize_pan",
           "grid_phase", "grid_offset", "is_half_phase"]


def mtf_sigma(ratio: int, gain: float) -> float:
    """Gaussian std (fine pixels) whose response at the coarse Nyquist ``1/(2 ratio)`` is ``gain``."""
    if not 0.0 < gain < 1.0:
        raise ValueError(f"MTF gain at Nyquist must lie in (0, 1), got {gain}")
    if ratio < 1:
        raise ValueError(f"ratio must be >= 1, got {ratio}")
    return ratio * math.sqrt(-2.0 * math.log(gain)) / math.pi


def _gains(gains: float | Sequence[float], channels: int) -> list[float]:
    if np.isscalar(gains):
        return [float(gains)] * channels
    gains = [float(g) for g in gains]
    if len(gains) != channels:
        raise ValueError(f"{len(gains)} MTF gains for {channels} bands")
    return gains


def mtf_blur(image: np.ndarray, ratio: int, gains: float | Sequence[float]) -> np.ndarray:
    """Blur each band of ``(C, H, W)`` (or ``(H, W)``) with its MTF-matched Gaussian (float64)."""
    img = np.asarray(image, dtype=np.float64)
    if img.ndim == 2:
        return ndimage.gaussian_filter(img, mtf_sigma(ratio, _gains(gains, 1)[0]), mode="reflect", truncate=4.0)
    out = np.empty_like(img)
    for c, g in enumerate(_gains(gains, img.shape[0])):
        out[c] = ndimage.gaussian_filter(img[c], mtf_sigma(ratio, g), mode="reflect", truncate=4.0)
    return out


def is_half_phase(phase: float | None) -> bool:
    """Whether ``phase`` is a half-integer (coarse centres between fine pixels); ``ValueError`` if neither."""
    if phase is None:
        return False
    twice = 2 * float(phase)
    if abs(twice - round(twice)) > 1e-9:
        raise ValueError(f"grid phase must be an integer or a half-integer, got {phase}")
    return round(twice) % 2 == 1


def decimate(image: np.ndarray, ratio: int, phase: float | None = None) -> np.ndarray:
    """Keep every ``ratio``-th pixel starting at ``phase`` (default ``ratio // 2``) on the last two axes.

    A half-integer ``phase`` ``k + 0.5`` (block-aligned grids) takes the mean of fine pixels ``k + r j``
    and ``k + 1 + r j`` on each axis (as many coarse pixels as both exist for).
    """
    if not is_half_phase(phase):
        p = ratio // 2 if phase is None else int(round(float(phase)))
        return np.ascontiguousarray(image[..., p::ratio, p::ratio])
    k = int(np.floor(float(phase)))
    img = np.asarray(image, dtype=np.float64)
    for axis in (-2, -1):
        a = np.moveaxis(img, axis, -1)
        lo, hi = a[..., k::ratio], a[..., k + 1::ratio]
        n = min(lo.shape[-1], hi.shape[-1])
        img = np.moveaxis(0.5 * (lo[..., :n] + hi[..., :n]), -1, axis)
    return np.ascontiguousarray(img)


def wald_degrade(image: np.ndarray, ratio: int, gains: float | Sequence[float], phase: float | None = None
                 ) -> np.ndarray:
    """Wald's reduction: MTF-matched blur then decimation by ``ratio`` (float64).

    With a half-integer ``phase`` the Gaussian's gain is ``gain / cos(pi / (2 ratio))``, so that
    blur and the 2-tap mean of :func:`decimate` together have the MTF gain at the coarse Nyquist.
    """
    if is_half_phase(phase):
        box = math.cos(math.pi / (2 * ratio))
        gains = (float(gains) / box if np.isscalar(gains) else [float(g) / box for g in gains])
    return decimate(mtf_blur(image, ratio, gains), ratio, phase)


def upsample(image: np.ndarray, ratio: int, shape: tuple[int, int] | None = None,
             phase: float | tuple[float, float] | None = None, offset: tuple[int, int] = (0, 0)) -> np.ndarray:
    """Cubic-spline interpolation of ``(C, h, w)`` onto the fine grid (float64).

    Fine pixel ``k`` samples the coarse image at ``(k + offset - phase) / ratio``; ``shape``
    (default ``(h r, w r)``) is the fine output size and ``offset`` the fine-grid index of the
    output's first pixel (used by tiles that start inside a scene). ``phase`` may be a
    half-integer, and a ``(row, col)`` pair when the two axes differ.
    """
    img = np.asarray(image, dtype=np.float64)
    squeeze = img.ndim == 2
    if squeeze:
        img = img[None]
    pr, pc = (ratio // 2, ratio // 2) if phase is None else (
        (float(phase), float(phase)) if np.isscalar(phase) else (float(phase[0]), float(phase[1])))
    h, w = shape or (img.shape[-2] * ratio, img.shape[-1] * ratio)
    rows = (np.arange(h) + offset[0] - pr) / ratio
    cols = (np.arange(w) + offset[1] - pc) / ratio
    grid = np.meshgrid(rows, cols, indexing="ij")
    out = np.empty((img.shape[0], h, w))
    for c in range(img.shape[0]):
        out[c] = ndimage.map_coordinates(img[c], grid, order=3, mode="mirror")
    return out[0] if squeeze else out


def back_project(fused: np.ndarray, low: np.ndarray, ratio: int, gains: float | Sequence[float],
                 phase: float | tuple[float, float] | None, steps: int) -> np.ndarray:
    """Iterative back-projection of ``fused`` ``(H, W)`` or ``(C, H, W)`` onto its measurement ``low``.

    ``f <- f + up(low - D f)`` ``steps`` times, ``D`` the Wald degradation with the bands' MTF ``gains``
    (:func:`wald_degrade`) and ``up`` the cubic interpolation (:func:`upsample`; Irani & Peleg 1991): the
    output then reproduces the measured MS when degraded, which neither a classical detail injection nor a
    posterior sample does exactly. Zero steps return ``fused`` (as float64).
    """
    f = np.asarray(fused, np.float64)
    low = np.asarray(low, np.float64)
    h, w = low.shape[-2:]
    for _ in range(int(steps)):
        residual = low - wald_degrade(f, ratio, gains, phase)[..., :h, :w]
        f = f + upsample(residual, ratio, f.shape[-2:], phase)
    return f


def synthesize_pan(ms: np.ndarray, weights: Sequence[float]) -> np.ndarray:
    """A pan image ``(H, W)`` as the weighted band sum of ``ms`` ``(C, H, W)`` (float64)."""
    ms = np.asarray(ms, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (ms.shape[0],):
        raise ValueError(f"{w.size} pan weights for {ms.shape[0]} bands")
    return np.tensordot(w, ms, axes=1)


def grid_phase(coarse_transform: Sequence[float], fine_transform: Sequence[float], ratio: int) -> tuple[int, int]:
    """Fine-pixel index (row, col) of the centre of coarse pixel (0, 0), from two affine transforms.

    Transforms are GDAL/rasterio ``(a, b, c, d, e, f)`` (north-up). Raises ``ValueError`` when the
    grids are not nested (resolution ratio or centre offset not an integer).
    """
    a, _, c, _, e, f = (float(v) for v in coarse_transform[:6])
    fa, _, fc, _, fe, ff = (float(v) for v in fine_transform[:6])
    if not (math.isclose(a / fa, ratio, rel_tol=1e-6) and math.isclose(e / fe, ratio, rel_tol=1e-6)):
        raise ValueError(f"pixel sizes {a:g}/{fa:g} are not in the ratio {ratio}")
    col = (c + a / 2 - fc) / fa - 0.5
    row = (f + e / 2 - ff) / fe - 0.5
    out = []
    for v in (row, col):
        if abs(v - round(v)) > 1e-6 or round(v) < 0:
            raise ValueError(f"coarse pixel centres fall at fine index {v:g}, not on a fine pixel centre")
        out.append(int(round(v)))
    return out[0], out[1]


def grid_offset(coarse_transform: Sequence[float], fine_transform: Sequence[float], ratio: int
                ) -> tuple[float, float]:
    """Fine-pixel index (row, col) of the centre of coarse pixel (0, 0): integer or half-integer, any sign.

    The block-aligned counterpart of :func:`grid_phase` (Sentinel-2: a 20 m centre lies on the
    corner between four 10 m pixels). ``ValueError`` when the grids are not nested.
    """
    a, _, c, _, e, f = (float(v) for v in coarse_transform[:6])
    fa, _, fc, _, fe, ff = (float(v) for v in fine_transform[:6])
    if not (math.isclose(a / fa, ratio, rel_tol=1e-6) and math.isclose(e / fe, ratio, rel_tol=1e-6)):
        raise ValueError(f"pixel sizes {a:g}/{fa:g} are not in the ratio {ratio}")
    out = []
    for v in ((f + e / 2 - ff) / fe - 0.5, (c + a / 2 - fc) / fa - 0.5):
        if abs(2 * v - round(2 * v)) > 1e-6:
            raise ValueError(f"coarse pixel centres fall at fine index {v:g}, neither on nor between fine pixels")
        out.append(round(2 * v) / 2)
    return out[0], out[1]
