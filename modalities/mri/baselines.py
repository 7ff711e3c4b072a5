"""Classical MRI reconstruction baselines: zero-filled, TV and L1-wavelet compressed sensing.

* :func:`zero_filled`: ``A^H y`` -- the inverse FFT of the zero-filled k-space; multi-coil data is
  combined with sensitivity maps (SENSE combination, complex) or, without maps, by
  root-sum-of-squares (magnitude).
* :func:`tv_recon`: ``sigpy.mri.app.TotalVariationRecon`` -- ``min_x 1/2 ||M F S x - y||^2 +
  lambda ||grad x||_1`` (anisotropic TV, primal-dual hybrid gradient; Block, Uecker & Frahm, MRM
  2007; Chambolle & Pock, JMIV 2011).
* :func:`l1_wavelet_recon`: ``sigpy.mri.app.L1WaveletRecon`` -- ``min_x 1/2 ||M F S x - y||^2 +
  lambda ||W x||_1`` with a Daubechies-4 wavelet (Lustig, Donoho & Pauly, MRM 2007), proximal
  gradient.

Both CS solvers are sigpy's (numpy, CPU, one slice at a time): the project's FFT convention is
sigpy's (centred, ortho), so sigpy's SENSE operator equals :class:`~.operators.MulticoilMRI`.

Scale invariance. ``lambda`` only means something relative to the data scale, so every slice's
k-space is divided by ``s = max |zero-filled image|`` before the solve and the result multiplied
back; the ``lambda`` values below therefore apply to images normalised to a maximum of ~1,
whatever the scanner units.

Tuned defaults (:data:`DEFAULT_LAMBDA`, :func:`default_lambda`), chosen with :func:`tune_lambda`
on TRAINING slices only -- colin27 T1 (``shared/data/mri/colin27_t1.nii.gz``, values /255),
axial ``z in {45, 55, 65, 75}`` (inside the training range ``[40, 80)``; the evaluation slices
``[80, 100)`` were never used), native 217x181, random-1D masks (exact rate, fastMRI centre
fractions, seeds 1000+i), noise-free k-space; single-coil = ``fft2c`` of the real slice,
multi-coil = :func:`~.coils.simulate_multicoil_kspace` (8 birdcage coils, smooth phase, seed i)
reconstructed with the true maps. Criterion: mean magnitude PSNR (fastMRI convention). Solver
iterations as the defaults (TV 200, L1-wavelet 100). Grid ``{1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2,
1e-1}`` (TV from ``1e-3``). Measured mean PSNR in dB::

    method      coils  R  best lambda  PSNR at best          zero-filled
    TV          1      4  3e-2         21.77                 21.16
    TV          1      8  3e-2         17.98                 17.87
    TV          8      4  1e-2         24.26 (3e-3: 24.24)   21.49
    TV          8      8  3e-3         20.12                 18.24
    L1-wavelet  1      4  1e-3         21.71                 21.16
    L1-wavelet  1      8  1e-3         18.12                 17.87
    L1-wavelet  8      4  1e-4         27.73 (3e-4: 27.73)   21.49
    L1-wavelet  8      8  3e-4         22.69                 18.24

Defaults (one per method and coil setting, the best compromise over R = 4 and 8): TV
single-coil ``3e-2``, multi-coil ``3e-3``; L1-wavelet single-coil ``1e-3``, multi-coil ``3e-4``.
Caveats: single-coil 1-D undersampling leaves coherent aliasing that neither regulariser removes
well (gains of 0.1-0.6 dB, consistent with fastMRI's single-coil baselines); sigpy's TV
primal-dual converges slowly (on training slice z=60, R=4, lambda 3e-2: 21.3 dB at 200
iterations, 21.8 at 600, 22.0 at 1500), so raise ``max_iter`` when time allows. The data were
noise-free; with measurement noise the optimum shifts to larger ``lambda`` -- re-tune with
:func:`tune_lambda` on training slices.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import sigpy.mri.app
import torch

from scorerecon.modalities.mri.operators import ifft2c, rss

Tensor = torch.Tensor

__all__ = ["DEFAULT_LAMBDA", "default_lambda", "l1_wavelet_recon", "tune_lambda", "tv_recon", "zero_filled"]

DEFAULT_LAMBDA: dict[str, dict[str, float]] = {
    "tv": {"singlecoil": 3e-2, "multicoil": 3e-3},
    "l1_wavelet": {"singlecoil": 1e-3, "multicoil": 3e-4},
}


def default_lambda(method: str, multicoil: bool) -> float:
    """The tuned ``lambda`` of :data:`DEFAULT_LAMBDA` for ``method`` and the coil setting."""
    return DEFAULT_LAMBDA[method]["multicoil" if multicoil else "singlecoil"]


def _batched(kspace: Tensor) -> Tensor:
    kspace = torch.as_tensor(kspace)
    if kspace.ndim == 3:
        kspace = kspace.unsqueeze(0)
    if kspace.ndim != 4 or not kspace.is_complex():
        raise ValueError(f"expected complex k-space (B, C, H, W) or (C, H, W), got {tuple(kspace.shape)}")
    return kspace


def zero_filled(kspace: Tensor, sens_maps: Tensor | None = None) -> Tensor:
    """Zero-filled reconstruction ``(B, 1, H, W)`` of (already masked) k-space ``(B, C, H, W)``.

    Single coil: complex ``ifft2c(y)``. Multi-coil with ``sens_maps`` ``(C, H, W)`` or
    ``(B, C, H, W)``: complex ``sum_c conj(S_c) ifft2c(y_c)``. Multi-coil without maps: real
    root-sum-of-squares of the coil images.
    """
    kspace = _batched(kspace)
    coil_images = ifft2c(kspace)
    if sens_maps is not None:
        maps = torch.as_tensor(sens_maps).to(device=coil_images.device, dtype=coil_images.dtype)
        return (maps.conj() * coil_images).sum(dim=1, keepdim=True)
    if kspace.shape[1] == 1:
        return coil_images
    return rss(coil_images, dim=1)


def _sigpy_recon(app_cls: type, kspace: Tensor, mask: Tensor, sens_maps: Tensor | None, lamda: float,
                 max_iter: int, **kwargs: Any) -> Tensor:
    kspace = _batched(kspace)
    b, c, h, w = kspace.shape
    mask_np = torch.as_tensor(mask).detach().cpu().numpy().astype(np.float32)
    mask_np = np.broadcast_to(mask_np.reshape(-1, h, w), (b, h, w))
    if sens_maps is None:
        if c != 1:
            raise ValueError("multi-coil k-space needs sens_maps (e.g. from espirit_maps)")
        maps_np = np.ones((b, 1, h, w), dtype=np.complex64)
    else:
        maps_np = torch.as_tensor(sens_maps).detach().cpu().numpy().astype(np.complex64)
        maps_np = np.broadcast_to(maps_np.reshape(-1, c, h, w), (b, c, h, w))
    ksp_np = kspace.detach().cpu().numpy().astype(np.complex64)
    out = np.empty((b, 1, h, w), dtype=np.complex64)
    for i in range(b):
        weights = np.ascontiguousarray(np.broadcast_to(mask_np[i], (c, h, w)))
        y = ksp_np[i] * weights
        zf = (np.conj(maps_np[i]) * np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(y, axes=(-2, -1)), norm="ortho"),
                                                      axes=(-2, -1))).sum(0)
        scale = float(np.abs(zf).max()) or 1.0
        app = app_cls(y / scale, np.ascontiguousarray(maps_np[i]), lamda, weights=weights, max_iter=max_iter,
                      show_pbar=False, **kwargs)
        out[i, 0] = np.asarray(app.run()) * scale
    return torch.from_numpy(out).to(kspace.device)


def tv_recon(kspace: Tensor, mask: Tensor, sens_maps: Tensor | None = None, lamda: float | None = None,
             max_iter: int = 200) -> Tensor:
    """Total-variation CS reconstruction (sigpy ``TotalVariationRecon``), complex ``(B, 1, H, W)``.

    ``kspace`` ``(B, C, H, W)``/``(C, H, W)`` complex, ``mask`` ``(H, W)`` or ``(B, 1, H, W)``;
    ``sens_maps`` required for ``C > 1``. ``lamda`` defaults to the tuned value for the coil
    setting (:func:`default_lambda`; applied to data normalised so the zero-filled image has max 1).
    """
    lam = default_lambda("tv", sens_maps is not None) if lamda is None else float(lamda)
    return _sigpy_recon(sigpy.mri.app.TotalVariationRecon, kspace, mask, sens_maps, lam, max_iter)


def l1_wavelet_recon(kspace: Tensor, mask: Tensor, sens_maps: Tensor | None = None, lamda: float | None = None,
                     max_iter: int = 100, wave_name: str = "db4") -> Tensor:
    """L1-wavelet CS reconstruction (sigpy ``L1WaveletRecon``), complex ``(B, 1, H, W)``.

    Same arguments and scale convention as :func:`tv_recon`; default :func:`default_lambda`.
    """
    lam = default_lambda("l1_wavelet", sens_maps is not None) if lamda is None else float(lamda)
    return _sigpy_recon(sigpy.mri.app.L1WaveletRecon, kspace, mask, sens_maps, lam, max_iter,
                        wave_name=wave_name)


def tune_lambda(method: str, images: Sequence[np.ndarray], make_mask: Callable[[tuple[int, int], int], Tensor],
                grid: Sequence[float] = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1), n_coils: int = 1,
                max_iter: int | None = None) -> dict[str, Any]:
    """Grid search of ``lambda`` by mean magnitude PSNR (fastMRI convention) over ``images``.

    ``images``: real 2-D magnitude slices (TRAINING slices only). ``make_mask(shape, i)`` gives the
    mask for slice ``i`` (seed it by ``i``). ``n_coils > 1`` simulates multi-coil k-space
    (:func:`~.coils.simulate_multicoil_kspace`, seed ``i``) and reconstructs with the true maps.
    Returns ``{"best", "psnr": {lambda: mean}, "zero_filled": mean}``.
    """
    from scorerecon.modalities.metrics import psnr
    from scorerecon.modalities.mri.coils import simulate_multicoil_kspace
    from scorerecon.modalities.mri.operators import fft2c

    recon = {"tv": tv_recon, "l1_wavelet": l1_wavelet_recon}[method]
    scores: dict[float, list[float]] = {float(lam): [] for lam in grid}
    zf_scores: list[float] = []
    for i, image in enumerate(images):
        image = np.asarray(image, dtype=np.float32)
        mask = make_mask(image.shape, i)
        if n_coils > 1:
            sim = simulate_multicoil_kspace(image, n_coils=n_coils, seed=i)
            kspace, maps, truth = sim.kspace * mask, sim.sens_maps, sim.image.abs().numpy()
        else:
            kspace, maps, truth = fft2c(torch.from_numpy(image).to(torch.complex64))[None] * mask, None, image
        zf_scores.append(psnr(truth, zero_filled(kspace, maps).abs()))
        for lam in scores:
            kw = {} if max_iter is None else {"max_iter": max_iter}
            scores[lam].append(psnr(truth, recon(kspace, mask, maps, lamda=lam, **kw).abs()))
    means = {lam: float(np.mean(v)) for lam, v in scores.items()}
    return {"best": max(means, key=means.get), "psnr": means, "zero_filled": float(np.mean(zf_scores))}
