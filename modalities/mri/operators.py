"""Cartesian MRI forward models: the FFT convention, real/complex layouts, single- and multi-coil.

FFT convention (one for the whole project, docs/conventions.md section 2; identical to sigpy's
``sp.fft``/``sp.ifft`` with ``center=True, norm="ortho"`` and to fastMRI's ``fft2c``/``ifft2c``)::

    kspace = fftshift(fft2(ifftshift(image), norm="ortho"))      # fft2c
    image  = fftshift(ifft2(ifftshift(kspace), norm="ortho"))    # ifft2c

over the last two axes ``(ky, kx)``; the DC sample sits at index ``(H // 2, W // 2)``. ``ortho``
makes the transform unitary, so ``ifft2c`` is both inverse and adjoint of ``fft2c`` and the
energy of image and k-space agree (Parseval).

Layouts
    Internally every image/k-space is a complex tensor: images ``(B, 1, H, W)``, k-space
    ``(B, C, H, W)`` (``C = 1`` single-coil). At the :class:`~scorerecon.models.guidance.LinearOperator`
    interface (what samplers, guidance and networks see) complex data is stored as **real
    channels** ``(B, 2C, H, W)`` ordered ``[re_0, im_0, re_1, im_1, ...]`` (see
    :func:`complex_to_channels` / :func:`channels_to_complex`); an image is therefore
    ``(B, 2, H, W)`` = (real, imaginary). The real inner product of the channel layout is the real
    part of the complex inner product, so an operator that is adjoint in one layout is adjoint in
    the other. ``A_complex`` / ``AH_complex`` expose the complex-layout maps directly (baselines,
    simulation).

Operators
    * :class:`CartesianMRI`: ``A = M F`` (single coil). A masked orthonormal transform, so it
      subclasses :class:`~scorerecon.models.guidance.MaskedTransformOperator` and inherits the
      closed-form ``A_dagger`` / ``prox_l2`` / ``project`` (hard k-space replacement).
    * :class:`MulticoilMRI`: SENSE model ``A = M F S`` with coil maps ``S`` ``(C, H, W)`` or
      ``(B, C, H, W)`` (Pruessmann et al., MRM 1999). ``A^H y = sum_c conj(S_c) F^H M y_c``.

Masks are binary ``(H, W)`` or ``(B, 1, H, W)`` tensors; the measurement is stored full-size with
zeros outside the mask (fastMRI / deepinv convention). Everything is batched and follows the
device and precision of its input (float32 <-> complex64, float64 <-> complex128).

Written here rather than imported: sigpy's ``linop.Sense`` is numpy/cupy only (no torch
autograd, no batch axis); deepinv is not a dependency of this project.
"""

from __future__ import annotations

import torch

from scorerecon.models.guidance import LinearOperator, MaskedTransformOperator

Tensor = torch.Tensor

__all__ = [
    "CartesianMRI",
    "MulticoilMRI",
    "channels_to_complex",
    "complex_to_channels",
    "fft2c",
    "ifft2c",
    "rss",
]

_DIMS = (-2, -1)


def fft2c(image: Tensor) -> Tensor:
    """Centred, orthonormal 2-D FFT over the last two axes (image -> k-space).

    The torch twin of :func:`scorerecon.modalities.io.kspace.image_to_kspace` (the project's one
    FFT convention, stated there); tests/test_mri_physics.py checks the two agree.
    """
    return torch.fft.fftshift(torch.fft.fft2(torch.fft.ifftshift(image, dim=_DIMS), norm="ortho"), dim=_DIMS)


def ifft2c(kspace: Tensor) -> Tensor:
    """Centred, orthonormal 2-D inverse FFT over the last two axes (k-space -> image)."""
    return torch.fft.fftshift(torch.fft.ifft2(torch.fft.ifftshift(kspace, dim=_DIMS), norm="ortho"), dim=_DIMS)


def _complex_dtype(dtype: torch.dtype) -> torch.dtype:
    if dtype.is_complex:
        return dtype
    return torch.complex128 if dtype == torch.float64 else torch.complex64


def complex_to_channels(z: Tensor) -> Tensor:
    """Complex ``(B, C, H, W)`` -> real ``(B, 2C, H, W)`` as ``[re_0, im_0, re_1, im_1, ...]``."""
    if not z.is_complex():
        z = z.to(_complex_dtype(z.dtype))
    b, c, h, w = z.shape
    return torch.view_as_real(z).permute(0, 1, 4, 2, 3).reshape(b, 2 * c, h, w)


def channels_to_complex(x: Tensor) -> Tensor:
    """Real ``(B, 2C, H, W)`` (``[re_0, im_0, ...]``) -> complex ``(B, C, H, W)``."""
    if x.is_complex():
        raise TypeError("channels_to_complex expects a real tensor with (re, im) channel pairs")
    b, c2, h, w = x.shape
    if c2 % 2:
        raise ValueError(f"need an even number of channels (re, im pairs), got {c2}")
    if x.dtype not in (torch.float32, torch.float64):
        x = x.float()
    return torch.view_as_complex(x.reshape(b, c2 // 2, 2, h, w).permute(0, 1, 3, 4, 2).contiguous())


def rss(coil_images: Tensor, dim: int = 1) -> Tensor:
    """Root-sum-of-squares coil combination (magnitude) along ``dim`` (kept, size 1)."""
    return coil_images.abs().pow(2).sum(dim=dim, keepdim=True).sqrt()


def _as_mask(mask: Tensor) -> Tensor:
    mask = torch.as_tensor(mask)
    if mask.ndim not in (2, 4):
        raise ValueError(f"mask must be (H, W) or (B, 1, H, W), got {tuple(mask.shape)}")
    return mask.to(torch.float32) if not mask.is_floating_point() else mask


class CartesianMRI(MaskedTransformOperator):
    """Single-coil Cartesian MRI, ``y = M fft2c(x)``, on the real channel layout.

    ``A``: image ``(B, 2, H, W)`` real -> k-space ``(B, 2, H, W)`` real (zeros off the mask).
    ``AH`` is the exact adjoint (``ifft2c`` of the masked k-space); ``normal(x) = F^H M F x``.
    Because ``F`` is unitary and ``M`` a binary projection, ``A_dagger = AH`` and the inherited
    ``project`` is hard k-space replacement (score-MRI, Chung & Ye 2022).
    """

    def __init__(self, mask: Tensor) -> None:
        super().__init__(_as_mask(mask))

    # the orthonormal transform on the real channel layout
    def T(self, x: Tensor) -> Tensor:
        return complex_to_channels(fft2c(channels_to_complex(x)))

    def T_inv(self, z: Tensor) -> Tensor:
        return complex_to_channels(ifft2c(channels_to_complex(z)))

    def normal(self, x: Tensor) -> Tensor:
        return self.AH(self.A(x))

    # complex layout
    def _cmask(self, like: Tensor) -> Tensor:
        return self.mask.to(device=like.device, dtype=like.real.dtype)

    def A_complex(self, x: Tensor) -> Tensor:
        """Complex image ``(B, 1, H, W)`` -> complex k-space ``(B, 1, H, W)``."""
        k = fft2c(x.to(_complex_dtype(x.dtype)))
        return self._cmask(k) * k

    def AH_complex(self, y: Tensor) -> Tensor:
        """Complex k-space ``(B, 1, H, W)`` -> complex image ``(B, 1, H, W)``."""
        y = y.to(_complex_dtype(y.dtype))
        return ifft2c(self._cmask(y) * y)


class MulticoilMRI(LinearOperator):
    """Multi-coil SENSE model ``y_c = M fft2c(S_c x)`` on the real channel layout.

    ``sens_maps``: complex ``(C, H, W)`` (shared by the batch) or ``(B, C, H, W)``.
    ``A``: image ``(B, 2, H, W)`` -> k-space ``(B, 2C, H, W)``; ``AH``: the exact adjoint
    ``sum_c conj(S_c) ifft2c(M y_c)``. With maps normalised to ``sum_c |S_c|^2 = 1`` (ESPIRiT
    inside the object, :func:`~scorerecon.modalities.mri.coils.simulate_multicoil_kspace`) and a
    full mask, ``AH A = I``. ``A_dagger`` / ``prox_l2`` / ``project`` use the CG defaults of
    :class:`~scorerecon.models.guidance.LinearOperator`.
    """

    def __init__(self, mask: Tensor, sens_maps: Tensor) -> None:
        self.mask = _as_mask(mask)
        sens_maps = torch.as_tensor(sens_maps)
        if sens_maps.ndim == 3:
            sens_maps = sens_maps.unsqueeze(0)
        if sens_maps.ndim != 4:
            raise ValueError(f"sens_maps must be (C, H, W) or (B, C, H, W), got {tuple(sens_maps.shape)}")
        self.sens_maps = sens_maps.to(_complex_dtype(sens_maps.dtype))

    @property
    def n_coils(self) -> int:
        return int(self.sens_maps.shape[1])

    def _maps(self, like: Tensor) -> Tensor:
        return self.sens_maps.to(device=like.device, dtype=like.dtype)

    def _cmask(self, like: Tensor) -> Tensor:
        return self.mask.to(device=like.device, dtype=like.real.dtype)

    def A_complex(self, x: Tensor) -> Tensor:
        """Complex image ``(B, 1, H, W)`` -> complex coil k-space ``(B, C, H, W)``."""
        x = x.to(_complex_dtype(x.dtype))
        k = fft2c(self._maps(x) * x)
        return self._cmask(k) * k

    def AH_complex(self, y: Tensor) -> Tensor:
        """Complex coil k-space ``(B, C, H, W)`` -> complex image ``(B, 1, H, W)``."""
        y = y.to(_complex_dtype(y.dtype))
        coil_images = ifft2c(self._cmask(y) * y)
        return (self._maps(coil_images).conj() * coil_images).sum(dim=1, keepdim=True)

    def A(self, x: Tensor) -> Tensor:
        return complex_to_channels(self.A_complex(channels_to_complex(x)))

    def AH(self, y: Tensor) -> Tensor:
        return complex_to_channels(self.AH_complex(channels_to_complex(y)))

    def normal(self, x: Tensor) -> Tensor:
        xc = channels_to_complex(x)
        s = self._maps(xc)
        coil_images = ifft2c(self._cmask(xc).pow(2) * fft2c(s * xc))
        return complex_to_channels((s.conj() * coil_images).sum(dim=1, keepdim=True))
