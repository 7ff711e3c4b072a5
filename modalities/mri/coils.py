"""Coil sensitivity maps: ESPIRiT calibration and multi-coil simulation from real magnitude images.

* :func:`espirit_maps` wraps ``sigpy.mri.app.EspiritCalib`` (Uecker et al., "ESPIRiT -- an
  eigenvalue approach to autocalibrating parallel MRI: where SENSE meets GRAPPA", MRM 71:990,
  2014) on the fully sampled autocalibration (ACS) block at the k-space centre. sigpy normalises
  the maps to unit sum-of-squares where the eigenvalue exceeds ``crop`` (zero elsewhere) and
  references their phase to coil 0.
* :func:`jsense_maps` wraps ``sigpy.mri.app.JsenseRecon`` (JSENSE, Ying & Sheng, MRM 57:1196, 2007,
  with NLINV's regularisation, Uecker et al., MRM 60:674, 2008) for k-space with **no** fully
  sampled centre (variable-density data acquired that way): coil maps and the image are estimated
  jointly from the samples that were measured in the central block, missing ones weighted out.
  It also returns the phase of the jointly estimated low-resolution image, the phase a magnitude
  prior needs folded into the forward model when no ACS block exists to estimate it from.
* :func:`simulate_multicoil_kspace` makes multi-coil k-space from a real magnitude image (no real
  in-vivo multi-coil data ships with the project, see ``shared/data/README.md``): birdcage
  sensitivities (``sigpy.mri.birdcage_maps``), normalised the same way ESPIRiT's are, times a
  smooth, seeded, low-order polynomial object phase, then the project FFT (``fft2c``).

Normalisation of the simulated maps: ``S_c <- S_c / sqrt(sum_c |S_c|^2) * conj(S_0) / |S_0|``,
i.e. unit sum-of-squares everywhere and coil 0 real-positive. Hence ``sum_c conj(S_c) S_c = 1`` (a
full-mask SENSE operator is unitary on images), all object phase lives in the image, and ESPIRiT
estimates the same maps up to a sign -- which is what the coil tests check.

Everything here runs on the CPU in numpy (sigpy); results come back as torch complex64.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import sigpy
import sigpy.mri
import sigpy.mri.app
import torch

from scorerecon.modalities.mri.operators import fft2c, ifft2c

Tensor = torch.Tensor

__all__ = [
    "MulticoilSimulation",
    "birdcage_sensitivities",
    "espirit_maps",
    "jsense_maps",
    "normalize_maps",
    "sens_combine",
    "simulate_multicoil_kspace",
    "smooth_phase",
]


def _to_numpy(a: Any) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        return a.detach().cpu().numpy()
    return np.asarray(a)


def espirit_maps(kspace: Any, calib_width: int = 24, thresh: float = 0.02, kernel_width: int = 6,
                 crop: float = 0.95, max_iter: int = 100) -> Any:
    """ESPIRiT maps ``(C, ky, kx)`` -> ``(C, H, W)`` from centred k-space (one set of maps).

    Only the central ``calib_width`` x ``calib_width`` block is used, so undersampled k-space
    works as long as that block is fully sampled. Parameters are sigpy's (``thresh``: singular
    value threshold relative to the largest; ``crop``: eigenvalue threshold below which a map is
    zeroed). Returns the input's type: numpy in, numpy out; torch in, torch complex64 out (on the
    input's device).
    """
    ksp = _to_numpy(kspace).astype(np.complex64)
    if ksp.ndim != 3:
        raise ValueError(f"expected k-space (coil, ky, kx), got shape {ksp.shape}")
    maps = sigpy.mri.app.EspiritCalib(ksp, calib_width=calib_width, thresh=thresh, kernel_width=kernel_width,
                                      crop=crop, max_iter=max_iter, show_pbar=False).run()
    maps = np.asarray(maps, dtype=np.complex64)
    if isinstance(kspace, torch.Tensor):
        return torch.from_numpy(maps).to(kspace.device)
    return maps


def jsense_maps(kspace: Any, calib_width: int = 32, kernel_width: int = 8, lamda: float = 1e-3,
                max_iter: int = 10) -> tuple[Any, Any]:
    """Coil maps ``(C, H, W)`` and low-resolution image phase ``(H, W)`` from undersampled k-space ``(C, H, W)``.

    JSENSE/NLINV (``sigpy.mri.app.JsenseRecon``) on the central ``calib_width`` square block: the
    maps (``kernel_width``-wide k-space kernels, so smooth) and the image are fitted jointly to
    the samples measured there -- a sample is measured where any coil is non-zero -- so no fully
    sampled block is needed. ``lamda`` is NLINV's Tikhonov weight on both kernels (sigpy scales the
    data to unit norm first); without it the alternating least squares diverge on 2-D undersampled
    data (NaN maps), while 1e-4..1e-2 give the same maps (8 simulated birdcage coils of a real brain
    slice, 14 % Poisson sampling without a calibration box: per-pixel agreement |<S_est, S_true>|
    0.998). The maps have unit sum-of-squares everywhere (sigpy's normalisation, no crop).

    The phase is that of the jointly estimated image (``JsenseRecon.img_ker``, its k-space over
    the calibration block), Hann-windowed and zero-padded to ``(H, W)``: ``maps * exp(1j * phase)``
    put the object's low-resolution phase into the maps, so the SENSE image is (nearly) real.
    Returns the input's type, like :func:`espirit_maps`.
    """
    ksp = _to_numpy(kspace).astype(np.complex64)
    if ksp.ndim != 3:
        raise ValueError(f"expected k-space (coil, ky, kx), got shape {ksp.shape}")
    h, w = ksp.shape[-2:]
    calib = int(min(calib_width, h, w))
    kernel = int(max(3, min(kernel_width, calib // 3)))
    weights = (np.abs(ksp) > 0).any(axis=0).astype(np.float32)
    app = sigpy.mri.app.JsenseRecon(ksp, mps_ker_width=kernel, ksp_calib_width=calib, lamda=lamda,
                                    weights=weights, max_iter=max_iter, show_pbar=False)
    maps = np.asarray(app.run(), dtype=np.complex64)
    if not np.all(np.isfinite(maps)):
        raise ValueError(f"JSENSE diverged on the {calib}x{calib} calibration block (non-finite maps)")
    image_kernel = np.asarray(app.img_ker)
    n0, n1 = image_kernel.shape
    window = np.outer(np.hanning(n0 + 2)[1:-1], np.hanning(n1 + 2)[1:-1])
    low = sigpy.ifft(sigpy.resize(image_kernel * window, (h, w)))
    phase = np.angle(low).astype(np.float32)
    if isinstance(kspace, torch.Tensor):
        return torch.from_numpy(maps).to(kspace.device), torch.from_numpy(phase).to(kspace.device)
    return maps, phase


def normalize_maps(maps: Tensor, eps: float = 1e-12) -> Tensor:
    """Unit sum-of-squares over coils (dim -3) and coil 0 made real-positive (ESPIRiT's convention)."""
    maps = maps / maps.abs().pow(2).sum(dim=-3, keepdim=True).sqrt().clamp_min(eps)
    ref = maps[..., :1, :, :]
    return maps * (ref.conj() / ref.abs().clamp_min(eps))


def birdcage_sensitivities(n_coils: int, shape: tuple[int, int], radius: float = 1.5,
                           normalize: bool = True) -> Tensor:
    """Birdcage coil maps ``(C, H, W)`` complex64 (``sigpy.mri.birdcage_maps``), optionally normalised."""
    maps = torch.from_numpy(sigpy.mri.birdcage_maps((int(n_coils), *map(int, shape)), r=radius,
                                                     dtype=np.complex128))
    return (normalize_maps(maps) if normalize else maps).to(torch.complex64)


def smooth_phase(shape: tuple[int, int], order: int = 2, max_phase: float = np.pi / 2, seed: int = 0) -> Tensor:
    """Seeded smooth phase map ``(H, W)`` (radians): a random polynomial of total degree ``order``.

    Coordinates are normalised to ``[-1, 1]``; coefficients ``~ N(0, 1)`` (constant term
    included), and the map is scaled so ``max |phase| = max_phase``. Models B0/receive phase, which
    is smooth, so that simulated images are genuinely complex.
    """
    h, w = (int(s) for s in shape)
    rng = np.random.RandomState(seed)
    y, x = np.meshgrid(np.linspace(-1, 1, h), np.linspace(-1, 1, w), indexing="ij")
    phase = np.zeros((h, w))
    for i in range(order + 1):
        for j in range(order + 1 - i):
            phase += rng.standard_normal() * x**i * y**j
    phase *= max_phase / max(np.abs(phase).max(), 1e-12)
    return torch.from_numpy(phase.astype(np.float32))


@dataclass
class MulticoilSimulation:
    """Output of :func:`simulate_multicoil_kspace` (all torch, unbatched)."""

    kspace: Tensor  # (C, H, W) complex64, fully sampled, centred
    sens_maps: Tensor  # (C, H, W) complex64, unit sum-of-squares, coil 0 real
    image: Tensor  # (H, W) complex64: magnitude * exp(i phase), the ground truth


def simulate_multicoil_kspace(image: Any, n_coils: int = 8, seed: int = 0, coil_radius: float = 1.5,
                              phase_order: int = 2, max_phase: float = np.pi / 2,
                              noise_std: float = 0.0) -> MulticoilSimulation:
    """Fully sampled multi-coil k-space of a real magnitude image ``(H, W)``.

    ``x = |image| exp(i phase)`` (:func:`smooth_phase`, seeded); ``k_c = fft2c(S_c x)`` with
    normalised birdcage maps; optional complex Gaussian noise of std ``noise_std`` per real and
    imaginary part (seeded by ``seed + 1``).
    """
    mag = torch.as_tensor(_to_numpy(image), dtype=torch.float32)
    if mag.ndim != 2:
        raise ValueError(f"expected a 2-D image, got shape {tuple(mag.shape)}")
    shape = tuple(mag.shape)
    truth = (mag * torch.exp(1j * smooth_phase(shape, phase_order, max_phase, seed))).to(torch.complex64)
    maps = birdcage_sensitivities(n_coils, shape, coil_radius)
    kspace = fft2c(maps * truth)
    if noise_std > 0:
        g = torch.Generator().manual_seed(seed + 1)
        noise = torch.randn((*kspace.shape, 2), generator=g) * noise_std
        kspace = kspace + torch.view_as_complex(noise)
    return MulticoilSimulation(kspace=kspace, sens_maps=maps, image=truth)


def sens_combine(kspace: Tensor, sens_maps: Tensor) -> Tensor:
    """SENSE coil combination ``sum_c conj(S_c) ifft2c(k_c)`` over dim -3 (no mask applied)."""
    return (sens_maps.conj() * ifft2c(kspace)).sum(dim=-3)
