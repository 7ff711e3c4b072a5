"""Degradations of natural RGB images, as batched torch operators on ``(B, C, H, W)`` tensors.

Linear degradations are :class:`~scorerecon.models.guidance.LinearOperator` objects (``A``, exact
adjoint ``AH``), so every zero-shot solver of :mod:`scorerecon.pipelines.tasks` uses them as
they are; each also exposes the singular value decomposition ``A = U diag(s) V^T`` in the cheap
form the DDRM-style solver needs (:class:`SVDOperator`): ``V^T x`` (:meth:`~SVDOperator.Vt`),
its inverse, ``s`` and the measurement in the spectral basis ``U^T y / s``.

=================== ==========================================================================
``BicubicDown``     bicubic downsampling by an integer factor: the separable resampling
                    matrices of Pillow's / ``torch.nn.functional.interpolate(antialias=True)``'s
                    bicubic filter (Keys' cubic, ``a = -0.5``, stretched by the factor for
                    anti-aliasing, truncated and renormalised at the borders). The SVD is the
                    Kronecker product of the two small matrices' SVDs.
``Blur``            circular convolution with a kernel by FFT; ``V = F^H`` (orthonormal DFT),
                    ``s = |K|`` (the kernel's transfer function), ``U^T y / s = F y / K``.
``Inpainting``      a pixel mask (1 = observed) on the shared masked-transform operator of
                    :mod:`scorerecon.models.guidance`; ``V = I``, ``s`` = mask.
``Identity``        denoising; ``s = 1``.
``LowLight``        exposure scaling, gamma and Poisson-Gaussian noise: non-linear, so it is
                    only a data generator (for the conditional model and the benchmark).
=================== ==========================================================================

Masks (box, random pixels, free-form strokes in the style of DeepFill v2's training masks, Yu
et al., ICCV 2019) are drawn with scikit-image from a seeded numpy generator. Noise is added on
the ``[0, 1]`` scale with ``sigma`` given on the usual ``0..255`` scale and is not clipped, so
the measurement model ``y = A x + n`` holds exactly. Everything here is hand-written on torch /
numpy / scikit-image because no maintained library ships these operators with exact adjoints
and SVDs in this interface (deepinv has similar physics but is not a dependency).
"""

from __future__ import annotations

import math
from abc import abstractmethod
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy import ndimage
from skimage import draw

from scorerecon.models.guidance import LinearOperator, MaskedTransformOperator

Tensor = torch.Tensor

__all__ = [
    "BicubicDown",
    "Blur",
    "Identity",
    "Inpainting",
    "LowLight",
    "SVDOperator",
    "add_noise",
    "bicubic_resize",
    "box_mask",
    "gaussian_kernel",
    "make_mask",
    "motion_kernel",
    "random_mask",
    "resize_matrix",
    "stroke_mask",
]


# --------------------------------------------------------------------------------------------
# the SVD interface of the DDRM-style solver
# --------------------------------------------------------------------------------------------
class SVDOperator(LinearOperator):
    """A linear operator with a cheap SVD ``A = U diag(s) V^T`` (``V`` square and orthonormal).

    Spectral coefficients may be complex (the DFT basis); the solver only forms real linear
    combinations of them with weights that depend on ``s``, so real images stay real.
    """

    @abstractmethod
    def Vt(self, x: Tensor) -> Tensor:
        """``V^T x``: image batch -> spectral coefficients (same count as pixels)."""

    @abstractmethod
    def V(self, c: Tensor) -> Tensor:
        """``V c``: spectral coefficients -> image batch (the inverse of :meth:`Vt`)."""

    @abstractmethod
    def singular_values(self, like: Tensor) -> Tensor:
        """``s`` broadcastable to ``Vt(like)``; zero where the operator sees nothing."""

    @abstractmethod
    def spectral_measurement(self, y: Tensor) -> Tensor:
        """``U^T y / s`` on the spectral grid (zero where ``s = 0``)."""

    def A_dagger(self, y: Tensor, n_iter: int = 0, tol: float = 0.0) -> Tensor:
        """Closed-form pseudo-inverse ``V (U^T y / s)`` (zero on the coefficients the operator treats as unseen)."""
        return self.V(self.spectral_measurement(y)).real.to(y.dtype)

    def prox_l2(self, z: Tensor, y: Tensor, gamma: float | Tensor, n_iter: int = 0, tol: float = 0.0) -> Tensor:
        """Closed-form ``argmin 1/2 ||A x - y||^2 + 1/(2 gamma) ||x - z||^2`` in the SVD basis.

        Per spectral coefficient ``c = (s^2 ybar + V^T z / gamma) / (s^2 + 1 / gamma)`` (exact up
        to the singular values an operator chose to treat as zero).
        """
        cz = self.Vt(z)
        s = self.singular_values(cz)
        inv = 1.0 / (gamma if isinstance(gamma, Tensor) else torch.tensor(float(gamma)))
        inv = inv.to(s.dtype).expand(z.shape[0]).reshape(-1, *([1] * (z.ndim - 1)))
        c = (s * s * self.spectral_measurement(y.to(z)) + inv * cz) / (s * s + inv)
        return self.V(c).to(z.dtype)


# --------------------------------------------------------------------------------------------
# bicubic resampling
# --------------------------------------------------------------------------------------------
def _cubic(x: np.ndarray, a: float = -0.5) -> np.ndarray:
    """Keys' cubic convolution kernel (Pillow and MATLAB use ``a = -0.5``)."""
    x = np.abs(x)
    return np.where(x <= 1, ((a + 2) * x - (a + 3)) * x * x + 1,
                    np.where(x < 2, (((x - 5) * x + 8) * x - 4) * a, 0.0))


def resize_matrix(n_in: int, n_out: int) -> np.ndarray:
    """The ``(n_out, n_in)`` bicubic resampling matrix of Pillow's ``resize(BICUBIC)``.

    Output sample ``i`` sits at input coordinate ``(i + 0.5) n_in / n_out``; when shrinking the
    kernel is stretched by ``n_in / n_out`` (anti-aliasing); taps outside the image are dropped
    and the row renormalised to sum to one (Pillow's ``precompute_coeffs``).
    """
    scale = n_in / n_out
    support = 2.0 * max(scale, 1.0)
    out = np.zeros((n_out, n_in))
    for i in range(n_out):
        center = (i + 0.5) * scale
        lo, hi = max(int(center - support + 0.5), 0), min(int(center + support + 0.5), n_in)
        j = np.arange(lo, hi)
        w = _cubic((j + 0.5 - center) / max(scale, 1.0))
        out[i, lo:hi] = w / w.sum()
    return out


def _apply_separable(x: Tensor, rows: Tensor, cols: Tensor) -> Tensor:
    """``rows @ x @ cols^T`` on the last two dims."""
    return torch.matmul(torch.matmul(rows.to(x), x), cols.to(x).transpose(0, 1))


def bicubic_resize(x: Tensor, size: tuple[int, int]) -> Tensor:
    """Bicubic resize of a ``(..., H, W)`` tensor to ``size`` (Pillow's filter, any direction)."""
    h, w = x.shape[-2:]
    rows = torch.from_numpy(resize_matrix(h, size[0]))
    cols = torch.from_numpy(resize_matrix(w, size[1]))
    return _apply_separable(x, rows, cols)


class BicubicDown(SVDOperator):
    """``y = R_h x R_w^T``: bicubic downsampling of ``(B, C, H, W)`` by ``scale`` (H, W divisible)."""

    def __init__(self, shape: tuple[int, int], scale: int = 4) -> None:
        h, w = (int(s) for s in shape)
        if scale < 1 or h % scale or w % scale:
            raise ValueError(f"image size {h}x{w} is not divisible by the scale {scale}")
        self.scale, self.shape = int(scale), (h, w)
        self.rows = torch.from_numpy(resize_matrix(h, h // scale))
        self.cols = torch.from_numpy(resize_matrix(w, w // scale))
        uh, sh, vht = torch.linalg.svd(self.rows, full_matrices=True)
        uw, sw, vwt = torch.linalg.svd(self.cols, full_matrices=True)
        self._uh, self._uw, self._vh, self._vw = uh, uw, vht.T, vwt.T
        s = torch.zeros(h, w, dtype=torch.float64)
        s[: h // scale, : w // scale] = torch.outer(sh, sw)
        self._s = s

    def A(self, x: Tensor) -> Tensor:
        return _apply_separable(x, self.rows, self.cols)

    def AH(self, y: Tensor) -> Tensor:
        return _apply_separable(y, self.rows.T, self.cols.T)

    def Vt(self, x: Tensor) -> Tensor:
        return _apply_separable(x, self._vh.T, self._vw.T)

    def V(self, c: Tensor) -> Tensor:
        return _apply_separable(c, self._vh, self._vw)

    def singular_values(self, like: Tensor) -> Tensor:
        return self._s.to(like.real.dtype)

    def spectral_measurement(self, y: Tensor) -> Tensor:
        h, w = self.shape
        uy = _apply_separable(y, self._uh.T, self._uw.T)
        out = torch.zeros(*y.shape[:-2], h, w, dtype=y.dtype)
        m, n = uy.shape[-2:]
        out[..., :m, :n] = uy / self._s[:m, :n].to(y)
        return out


# --------------------------------------------------------------------------------------------
# blur
# --------------------------------------------------------------------------------------------
def gaussian_kernel(size: int = 15, sigma: float = 2.0) -> np.ndarray:
    """A normalised isotropic Gaussian kernel of odd ``size``."""
    r = np.arange(size) - (size - 1) / 2
    g = np.exp(-0.5 * (r / sigma) ** 2)
    k = np.outer(g, g)
    return k / k.sum()


def motion_kernel(length: int = 15, angle: float = 30.0, size: int | None = None) -> np.ndarray:
    """Linear motion blur: an anti-aliased line of ``length`` pixels at ``angle`` degrees, normalised."""
    size = size or (length + 2 if length % 2 == 0 else length + 1) + 1
    k = np.zeros((size, size))
    c = (size - 1) / 2
    dx, dy = 0.5 * (length - 1) * math.cos(math.radians(angle)), 0.5 * (length - 1) * math.sin(math.radians(angle))
    rr, cc, val = draw.line_aa(int(round(c - dy)), int(round(c - dx)), int(round(c + dy)), int(round(c + dx)))
    keep = (rr >= 0) & (rr < size) & (cc >= 0) & (cc < size)
    k[rr[keep], cc[keep]] = np.maximum(k[rr[keep], cc[keep]], val[keep])
    return k / k.sum()


class Blur(SVDOperator):
    """Circular convolution of ``(B, C, H, W)`` images with ``kernel`` (centred), by 2-D FFT.

    ``A x = F^{-1}(K F x)`` with ``K`` the DFT of the kernel embedded at the origin (MATLAB's
    ``psf2otf``); the adjoint multiplies by ``conj(K)``; the SVD is diagonal in Fourier.
    """

    def __init__(self, kernel: np.ndarray, shape: tuple[int, int], svd_tol: float = 1e-2) -> None:
        h, w = (int(s) for s in shape)
        kh, kw = kernel.shape
        if kh > h or kw > w:
            raise ValueError(f"kernel {kernel.shape} larger than the image {shape}")
        pad = np.zeros((h, w))
        pad[:kh, :kw] = kernel
        pad = np.roll(pad, (-(kh // 2), -(kw // 2)), axis=(0, 1))
        self.kernel, self.shape = np.asarray(kernel, dtype=np.float64), (h, w)
        self.otf = torch.fft.fft2(torch.from_numpy(pad))
        mag = self.otf.abs()
        self._s = torch.where(mag > svd_tol * mag.max(), mag, torch.zeros_like(mag))

    def _filter(self, x: Tensor, transfer: Tensor) -> Tensor:
        return torch.fft.ifft2(torch.fft.fft2(x) * transfer.to(x.device, torch.complex128 if x.dtype == torch.float64
                                                                 else torch.complex64)).real

    def A(self, x: Tensor) -> Tensor:
        return self._filter(x, self.otf)

    def AH(self, y: Tensor) -> Tensor:
        return self._filter(y, self.otf.conj())

    def Vt(self, x: Tensor) -> Tensor:
        return torch.fft.fft2(x, norm="ortho")

    def V(self, c: Tensor) -> Tensor:
        return torch.fft.ifft2(c, norm="ortho").real

    def singular_values(self, like: Tensor) -> Tensor:
        return self._s.to(like.real.dtype)

    def prox_l2(self, z: Tensor, y: Tensor, gamma: float | Tensor, n_iter: int = 0, tol: float = 0.0) -> Tensor:
        """Exact in Fourier with the full transfer function (no singular value dropped)."""
        inv = 1.0 / (gamma if isinstance(gamma, Tensor) else torch.tensor(float(gamma)))
        inv = inv.to(z.dtype).expand(z.shape[0]).reshape(-1, *([1] * (z.ndim - 1)))
        otf = self.otf.to(torch.complex128 if z.dtype == torch.float64 else torch.complex64)
        num = otf.conj() * torch.fft.fft2(y.to(z)) + inv * torch.fft.fft2(z)
        return torch.fft.ifft2(num / (otf.abs() ** 2 + inv)).real

    def spectral_measurement(self, y: Tensor) -> Tensor:
        fy = torch.fft.fft2(y, norm="ortho")
        otf = self.otf.to(fy.dtype)
        return torch.where(self._s.to(fy.real.dtype) > 0, fy / torch.where(otf.abs() > 0, otf, torch.ones_like(otf)),
                           torch.zeros_like(fy))


# --------------------------------------------------------------------------------------------
# masks, identity
# --------------------------------------------------------------------------------------------
class Inpainting(MaskedTransformOperator, SVDOperator):
    """Pixel inpainting: ``A x = mask * x`` (measurement stored full size, zeros where unseen)."""

    def __init__(self, mask: Tensor | np.ndarray) -> None:
        m = torch.as_tensor(np.asarray(mask, dtype=np.float32))
        super().__init__(m.reshape(1, 1, *m.shape[-2:]) if m.ndim == 2 else m)

    def Vt(self, x: Tensor) -> Tensor:
        return x

    def V(self, c: Tensor) -> Tensor:
        return c

    def singular_values(self, like: Tensor) -> Tensor:
        return self._mask(like)

    def spectral_measurement(self, y: Tensor) -> Tensor:
        return self._mask(y) * y


class Identity(Inpainting):
    """Denoising: ``A = I`` (an all-ones mask, so every closed form of :class:`Inpainting` applies)."""

    def __init__(self, shape: tuple[int, int]) -> None:
        super().__init__(np.ones(shape, dtype=np.float32))


def box_mask(shape: tuple[int, int], fraction: float = 0.25) -> np.ndarray:
    """A centred square hole covering ``fraction`` of the image area (1 = observed)."""
    h, w = shape
    side = math.sqrt(fraction * h * w)
    r0, c0 = int(round((h - side) / 2)), int(round((w - side) / 2))
    m = np.ones(shape, dtype=np.float32)
    m[r0: r0 + int(round(side)), c0: c0 + int(round(side))] = 0.0
    return m


def random_mask(shape: tuple[int, int], missing: float = 0.7, seed: int = 0) -> np.ndarray:
    """Each pixel missing independently with probability ``missing`` (1 = observed)."""
    rng = np.random.default_rng(seed)
    return (rng.random(shape) >= missing).astype(np.float32)


def stroke_mask(shape: tuple[int, int], strokes: int = 6, seed: int = 0, max_vertices: int = 8,
                width: tuple[int, int] = (5, 12)) -> np.ndarray:
    """Free-form brush strokes (DeepFill v2-style random polylines, thick lines), 1 = observed."""
    rng = np.random.default_rng(seed)
    h, w = shape
    hole = np.zeros(shape, dtype=bool)
    for _ in range(strokes):
        r, c = rng.integers(0, h), rng.integers(0, w)
        line = np.zeros(shape, dtype=bool)
        for _ in range(rng.integers(3, max_vertices + 1)):
            angle = rng.uniform(0, 2 * np.pi)
            length = rng.uniform(0.1, 0.3) * min(h, w)
            r2 = int(np.clip(r + length * np.sin(angle), 0, h - 1))
            c2 = int(np.clip(c + length * np.cos(angle), 0, w - 1))
            rr, cc = draw.line(int(r), int(c), r2, c2)
            line[rr, cc] = True
            r, c = r2, c2
        radius = int(rng.integers(width[0], width[1] + 1)) // 2
        hole |= ndimage.binary_dilation(line, structure=_disk(radius))
    return (~hole).astype(np.float32)


def _disk(radius: int) -> np.ndarray:
    r = np.arange(-radius, radius + 1)
    return (r[:, None] ** 2 + r[None, :] ** 2) <= radius * radius


def make_mask(kind: str, shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    """``box`` | ``random`` | ``strokes`` with this module's default sizes."""
    if kind == "box":
        return box_mask(shape)
    if kind == "random":
        return random_mask(shape, seed=seed)
    if kind == "strokes":
        return stroke_mask(shape, seed=seed)
    raise ValueError(f"unknown mask {kind!r}; expected box, random or strokes")


# --------------------------------------------------------------------------------------------
# noise and low light
# --------------------------------------------------------------------------------------------
def add_noise(x: Tensor, sigma: float, seed: int = 0) -> Tensor:
    """``x + sigma / 255 * N(0, I)`` (``x`` on the ``[0, 1]`` scale), not clipped."""
    if sigma <= 0:
        return x.clone()
    g = torch.Generator().manual_seed(int(seed))
    return x + (sigma / 255.0) * torch.randn(x.shape, generator=g, dtype=x.dtype)


@dataclass
class LowLight:
    """A dark, noisy capture of a ``[0, 1]`` image: ``Poisson(peak (e x)^gamma) / peak + N(0, r^2)``.

    ``exposure`` ``e`` scales the scene radiance, ``gamma > 1`` darkens the mid-tones further
    (a sensor response / tone-curve mismatch), ``peak`` is the photon count of a white pixel at
    full exposure (shot noise) and ``read_noise`` the Gaussian read noise; the result is
    clipped to ``[0, 1]`` like a stored image. Non-linear: no adjoint, no solver uses it as an
    operator.
    """

    exposure: float = 0.15
    gamma: float = 1.5
    peak: float = 600.0
    read_noise: float = 0.01

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        signal = np.clip(self.exposure * np.clip(x, 0.0, 1.0), 0.0, 1.0) ** self.gamma
        noisy = rng.poisson(signal * self.peak) / self.peak + rng.normal(0.0, self.read_noise, x.shape)
        return np.clip(noisy, 0.0, 1.0).astype(np.float32)

    def describe(self) -> dict[str, Any]:
        return {"exposure": self.exposure, "gamma": self.gamma, "peak": self.peak, "read_noise": self.read_noise}
