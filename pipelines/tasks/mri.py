"""MRI reconstruction task: Cartesian (multi-)coil k-space + a magnitude-trained score prior.

Forward models are :class:`~scorerecon.modalities.mri.operators.CartesianMRI` (single coil) and
:class:`~scorerecon.modalities.mri.operators.MulticoilMRI` (SENSE), which act on complex images
stored as (real, imaginary) channel pairs. The shipped brain priors are **one-channel magnitude
priors** (trained on real-valued T1 slices), so the complex image has to be reconciled with a
real prior explicitly. Two ways are offered (``complex_mode``):

``"real"`` (default)
    The unknown is a real image ``m`` and the object's phase is part of the forward model:
    ``y = M F S (e^{i phi} (a m + b))``. The phase ``phi`` is (a) zero for k-space simulated from a
    real magnitude image -- the honest single-coil evaluation setting, where the ground truth
    *is* real -- or (b) estimated from the fully sampled autocalibration (ACS) block as the phase
    of a low-resolution (Hann-windowed ACS) SENSE-combined image, for measured data with a
    smooth phase (the twix phantom). ``e^{i phi}`` is folded into the coil maps (one "coil" of
    pure phase for single-coil data), so the operator stays the SENSE operator. The embedding of
    the real image into the (re, im) layout has adjoint "take the real part", so hard data
    consistency is the projection onto ``{m real : A m = y}``; for a single coil ``A A^H`` has the
    two eigenvalues ``1/2`` and ``1`` (a real image's k-space is Hermitian), so CG reaches that
    projection to float precision in two iterations. What the phase estimate misses (phase
    detail beyond the ACS resolution) is left as data misfit: an honest limit of this mode.
``"channels"``
    score-MRI's choice (Chung & Ye, "Score-based diffusion models for accelerated MRI", MedIA
    2022): the state is the complex image as two channels and the magnitude prior is applied to
    the real and the imaginary part separately (as two images of one batch,
    :class:`~scorerecon.pipelines.tasks.SliceModel`). Exact k-space replacement; the prior is
    asked about images (imaginary parts) unlike anything it was trained on.

Intensity scale (``intensity``): the prior expects its training normalisation ``x = a m + b``.
The default (``None``) follows :func:`~scorerecon.pipelines.tasks.intensity_mode`: MR
intensities have no absolute unit, so priors with a ``percentile``/``minmax`` card get
``"auto"``, which maps 0 to the range's low end and the card's upper percentile (99.5th) of
the zero-filled magnitude of the input to its high end (what the card's percentile
normalisation does on the training volume); the result scales with the input (``5 k`` gives
``5 x``). ``"card"`` (the model card's values) is right only for data in the training
volume's own units, i.e. held-out slices of the training volume itself, or for a ``fixed``
(physical-unit) card.

Undersampling follows fastMRI (docs/conventions.md section 3): 1-D masks select columns (the last axis is
phase-encode); :func:`phase_encode_mask` turns them into row masks for k-space stores whose
phase-encode axis is ``ky`` (dim -2).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from scorerecon.modalities.mri.baselines import l1_wavelet_recon, tv_recon, zero_filled
from scorerecon.modalities.mri.masks import acceleration_of, default_center_fraction, make_mask
from scorerecon.modalities.mri.noise import kspace_noise_std
from scorerecon.modalities.mri.operators import (
    CartesianMRI,
    MulticoilMRI,
    channels_to_complex,
    complex_to_channels,
    fft2c,
    ifft2c,
)
from scorerecon.pipelines.tasks import (
    ModelSpaceOperator,
    Problem,
    Reconstruction,
    affine_from_normalization,
    intensity_mode,
    solver_spec,
)
from scorerecon.pipelines.tasks import reconstruct as _reconstruct

Tensor = torch.Tensor

__all__ = [
    "MRI_BASELINES",
    "acs_size",
    "calibrate_coils",
    "lowres_phase",
    "mri_baselines",
    "mri_problem",
    "phase_encode_mask",
    "reconstruct_mri",
    "simulate_singlecoil",
]

MRI_BASELINES: tuple[str, ...] = ("zero_filled", "tv", "l1_wavelet")


def _real_embed(m: Tensor) -> Tensor:
    """Real image ``(B, 1, H, W)`` -> (re, im) channels ``(B, 2, H, W)`` with zero imaginary part."""
    return torch.cat([m, torch.zeros_like(m)], dim=1)


def _real_part(x: Tensor) -> Tensor:
    """Adjoint of :func:`_real_embed`: the real channel."""
    return x[:, :1]


def simulate_singlecoil(image: Tensor, mask: Tensor) -> Tensor:
    """Masked single-coil k-space ``(B, 1, H, W)`` complex64 of real images ``(B, H, W)`` (noise-free)."""
    image = torch.as_tensor(image, dtype=torch.float32)
    k = fft2c(image.to(torch.complex64)).unsqueeze(1)
    return k * torch.as_tensor(mask, dtype=torch.float32).to(k.device)


def phase_encode_mask(kind: str, shape: tuple[int, int], acceleration: float, seed: int = 0,
                      axis: int = -1, center_fraction: float | None = None) -> Tensor:
    """A fastMRI-style mask ``(H, W)`` whose 1-D lines run along ``axis`` (-1: columns, -2: rows).

    ``axis=-2`` (rows) is the layout of ingested k-space stores ``(coil, z, ky, kx)``, where
    ``ky`` is the phase-encode axis; 2-D Poisson masks ignore ``axis``.
    """
    h, w = (int(s) for s in shape)
    if axis == -1 or kind in ("poisson", "poisson2d"):
        return make_mask(kind, (h, w), acceleration, seed=seed, center_fraction=center_fraction)
    return make_mask(kind, (w, h), acceleration, seed=seed, center_fraction=center_fraction).T.contiguous()


def _central_run(profile: np.ndarray) -> int:
    """Length of the contiguous run of sampled entries around the centre index ``n // 2``."""
    n = profile.shape[0]
    c = n // 2
    if not profile[c]:
        return 0
    lo, hi = c, c
    while lo > 0 and profile[lo - 1]:
        lo -= 1
    while hi < n - 1 and profile[hi + 1]:
        hi += 1
    return hi - lo + 1


def acs_size(mask: Tensor) -> tuple[int, int]:
    """``(rows, cols)`` of the fully sampled central block (ACS region) of a mask ``(H, W)``."""
    m = torch.as_tensor(mask).reshape(-1, *mask.shape[-2:])[0].cpu().numpy() > 0
    h, w = m.shape
    col_run = _central_run(m[h // 2])
    row_run = _central_run(m[:, w // 2])
    # the block must be full: shrink the square until every entry is sampled
    size_r, size_c = row_run, col_run
    while size_r > 0 and size_c > 0:
        r0, c0 = h // 2 - size_r // 2, w // 2 - size_c // 2
        if m[r0:r0 + size_r, c0:c0 + size_c].all():
            return size_r, size_c
        size_r, size_c = max(0, size_r - 2), max(0, size_c - 2)
    return 0, 0


def acs_espirit_maps(kspace: Tensor, mask: Tensor, max_calib: int = 24) -> tuple[Tensor, int]:
    """ESPIRiT maps ``(S, C, H, W)`` of masked k-space ``(S, C, H, W)`` from the mask's ACS block, and its width.

    The calibration block is the largest fully sampled centre up to ``max_calib`` lines. The
    ESPIRiT kernel shrinks with it (:func:`espirit_kernel_width`: 6x6 from 15 lines, down to 3x3),
    because sigpy calibrates on a square block and a 6x6 kernel leaves too few calibration rows in
    a narrow one (all-zero maps from <= 10 lines). Raises ``ValueError`` when the block is under 8
    lines or ESPIRiT still finds no sensitivity in it, so no caller reconstructs with empty maps.
    """
    from scorerecon.modalities.mri.coils import espirit_maps

    calib = min(int(max_calib), *acs_size(mask))
    if calib < 8:
        raise ValueError(f"the mask's fully sampled centre is only {calib} lines wide; ESPIRiT needs >= 8")
    kernel = espirit_kernel_width(calib)
    maps = torch.stack([espirit_maps(kspace[i], calib_width=calib, kernel_width=kernel)
                        for i in range(kspace.shape[0])])
    if not bool((maps.abs().flatten(1).amax(dim=1) > 0).all()):
        raise ValueError(f"ESPIRiT found no coil sensitivity in the {calib}-line calibration block "
                         f"(kernel {kernel}x{kernel})")
    return maps, calib


def calibrate_coils(kspace: Tensor, mask: Tensor, max_calib: int = 24) -> tuple[Tensor, dict[str, Any]]:
    """Coil maps ``(S, C, H, W)`` for masked k-space ``(S, C, H, W)``, and a JSON-able record of how.

    ESPIRiT on the fully sampled centre when it is at least 8 lines wide (:func:`acs_espirit_maps`);
    otherwise -- data acquired without one, e.g. 2-D variable-density sampling -- JSENSE on the
    measured samples of the central block (:func:`scorerecon.modalities.mri.coils.jsense_maps`),
    with the jointly estimated low-resolution image phase folded into the maps
    (``record["phase_in_maps"]``: the image is then real and needs no ACS phase estimate). Raises
    ``ValueError`` when the centre is too sparsely sampled (< 25 %) to calibrate from.
    """
    from scorerecon.modalities.mri.coils import jsense_maps
    from scorerecon.modalities.mri.masks import central_density

    if min(acs_size(mask)) >= 8:
        maps, calib = acs_espirit_maps(kspace, mask, max_calib)
        return maps, {"method": "ESPIRiT (sigpy EspiritCalib)", "calib_width": calib, "phase_in_maps": False}
    width = min(32, *kspace.shape[-2:])
    density = central_density(mask, width)
    if density < 0.25:
        raise ValueError(f"no fully sampled centre and only {100 * density:.0f} % of the central {width}x{width} "
                         "block sampled: too little to calibrate coil maps from")
    pairs = [jsense_maps(kspace[i], calib_width=width) for i in range(kspace.shape[0])]
    maps = torch.stack([m * torch.exp(1j * phase).to(m.dtype) for m, phase in pairs])
    return maps, {"method": "JSENSE/NLINV on the measured samples (sigpy JsenseRecon), low-resolution image "
                            "phase folded into the maps", "calib_width": width,
                  "calib_density": round(density, 3), "phase_in_maps": True}


def espirit_kernel_width(calib: int) -> int:
    """ESPIRiT kernel width for a ``calib``-line square calibration block: about a third of it, 3..6.

    Measured on 8 simulated birdcage coils of a real brain slice (128^2): a 6x6 kernel gives
    all-zero maps from 10 lines and 78 % coverage from 12; width ``calib // 3 + 1`` covers the whole
    head with a per-pixel agreement |<S_est, S_true>| of 0.98-0.99 from 8 to 24 lines.
    """
    return max(3, min(6, int(calib) // 3 + 1))


def _hann_block(shape: tuple[int, int], block: tuple[int, int]) -> Tensor:
    """A separable Hann window of size ``block`` centred in a ``shape`` array (zeros outside)."""
    out = torch.zeros(shape)
    (h, w), (bh, bw) = shape, block
    bh, bw = bh - 1 + bh % 2, bw - 1 + bw % 2  # odd: symmetric about the DC sample n // 2
    win = torch.outer(torch.hann_window(bh + 2, periodic=False)[1:-1], torch.hann_window(bw + 2, periodic=False)[1:-1])
    r0, c0 = h // 2 - bh // 2, w // 2 - bw // 2
    out[r0:r0 + bh, c0:c0 + bw] = win
    return out


def lowres_phase(kspace: Tensor, mask: Tensor, sens_maps: Tensor | None = None) -> Tensor:
    """Phase ``(B, 1, H, W)`` of the low-resolution image from the ACS block (Hann-windowed).

    Multi-coil data are combined with ``sens_maps`` (``sum_c conj(S_c) x_c``), single-coil data
    used as they are. Raises ``ValueError`` if the mask has no fully sampled centre.
    """
    kspace = torch.as_tensor(kspace)
    size = acs_size(mask)
    if min(size) < 4:
        raise ValueError("the mask has no fully sampled central block (ACS) to estimate the phase from")
    window = _hann_block(tuple(kspace.shape[-2:]), size).to(kspace.device)
    coil_images = ifft2c(kspace * window)
    if sens_maps is None:
        if kspace.shape[1] != 1:
            raise ValueError("multi-coil k-space needs sens_maps for the phase estimate")
        combined = coil_images
    else:
        maps = torch.as_tensor(sens_maps).to(coil_images)
        combined = (maps.conj() * coil_images).sum(dim=1, keepdim=True)
    return torch.angle(combined).to(torch.float32)


def _auto_normalization(kspace: Tensor, sens_maps: Tensor | None, normalization: dict[str, Any]) -> dict:
    """The card's percentile normalisation resolved on this input: 0 -> low end, upper percentile -> high end.

    One scale for the whole batch (a volume's slices share their units); magnitude 0 (no
    signal) stays the low end, as on the training volume (0.5th percentile = background = 0).
    """
    q = float((normalization.get("percentiles") or (0.5, 99.5))[1]) / 100.0
    zf = zero_filled(kspace, sens_maps).abs().flatten().float()
    if zf.numel() > 16_000_000:  # torch.quantile's limit: a strided subset
        zf = zf[:: zf.numel() // 16_000_000 + 1]
    hi = float(torch.quantile(zf, q))
    return {"values": [0.0, max(hi, 1e-12)], "range": list(normalization.get("range", (-1.0, 1.0))),
            "percentile": q * 100.0, "of": "zero-filled magnitude of the input"}


#: The DDS data-step weight on noisy measured k-space: ``lam = max(1e-2, NOISE_WEIGHT * sigma^2)``
#: with ``sigma`` the k-space noise std in model units (:func:`noise_weighted_defaults`). Chosen on
#: TRAINING data only (benchmarks/noise_weight.py: Colin27 training slices z = 60, 120 with complex
#: Gaussian noise added at three levels, R = 3): see docs/medical.md, "Noisy measured k-space".
NOISE_WEIGHT = 100.0


def noise_weighted_defaults(sigma_model: float, weight: float | None = None
                            ) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """DDS's data-step weight for measurement noise ``sigma_model`` (per k-space component, model units).

    DDS solves ``min ||A x - y||^2 + lam ||x - x0_hat||^2``; as a MAP step that is ``lam = sigma^2 /
    tau^2`` with ``tau`` the error of the prior's estimate, so noisy data must pull less:
    ``lam = max(lam_default, weight * sigma^2)`` (``weight = 1 / tau^2``, :data:`NOISE_WEIGHT`). Noise-free
    (simulated) k-space keeps the default. Returns ``(solver_defaults, info)``.
    """
    weight = NOISE_WEIGHT if weight is None else float(weight)
    base = float(solver_spec("dds")["lam"])
    lam = max(base, weight * float(sigma_model) ** 2)
    info = {"kspace_std_model": round(float(sigma_model), 6), "dds_lam": lam,
            "rule": f"lam = max({base:g}, {weight:g} * sigma^2)"}
    defaults = {} if lam == base else {"dds": {"lam": lam}, "dds_tta": {"lam": lam}}
    return defaults, info


def mri_problem(kspace: Tensor, mask: Tensor, normalization: dict[str, Any], sens_maps: Tensor | None = None,
                complex_mode: str = "real", phase: str | Tensor | None = "auto",
                intensity: str | None = None, grid: tuple[int, int] | None = None,
                noise: float | str = "estimate") -> Problem:
    """The model-space problem for masked k-space ``(B, C, H, W)`` (complex) and a mask ``(H, W)``.

    ``normalization``: the model card's ``data.normalization`` (``values`` and ``range``).
    ``phase`` (``complex_mode="real"`` only): ``None`` = the image is real (simulated from a
    magnitude image), ``"acs"`` = estimate it from the ACS block (:func:`lowres_phase`),
    ``"auto"`` = ``None`` for single-coil data whose low-resolution ACS image is real to 1e-3
    (a real object), else ``"acs"``; or a phase tensor ``(B, 1, H, W)`` in radians. ``sens_maps`` ``(C, H, W)`` or
    ``(B, C, H, W)`` are required for ``C > 1``. ``intensity``: ``None`` (default) = the card's rule
    (:func:`~scorerecon.pipelines.tasks.intensity_mode`), or ``"auto"`` / ``"card"`` (module docstring).
    ``grid`` ``(H', W')``: reconstruct on that matrix over the same field of view (the prior's pixel
    size, :func:`~scorerecon.pipelines.tasks.grid.reconstruction_grid`); images in and out of the
    problem stay on the input's grid.

    ``noise``: the k-space noise std (per real / imaginary component, the k-space's units) that
    sets DDS's data-step weight (:func:`noise_weighted_defaults`): ``"estimate"`` (default, measured
    data) from the k-space corners (:func:`~scorerecon.modalities.mri.noise.kspace_noise_std`), or a
    number -- ``0`` for k-space simulated noise-free from the image that is also the reference (its
    image noise is part of what is reconstructed, not measurement noise).

    The problem can be cut (:attr:`~scorerecon.pipelines.tasks.Problem.select`): a subset of its
    slices is the same problem built on those slices with this batch's intensity scale and phase
    model, so a slice's result does not depend on the batch it runs in.
    """
    if noise == "estimate":
        noise = kspace_noise_std(torch.as_tensor(kspace) * torch.as_tensor(mask, dtype=torch.float32), mask)
    elif isinstance(noise, str):
        raise ValueError(f"noise must be 'estimate' or a number, got {noise!r}")
    noise = float(noise)
    problem = _mri_problem(kspace, mask, normalization, sens_maps, complex_mode, phase, intensity, grid, noise)
    problem.select = _slice_selector(torch.as_tensor(kspace), mask, problem, sens_maps, complex_mode, phase, grid,
                                     noise)
    return problem


def _slice_selector(kspace: Tensor, mask: Tensor, problem: Problem, sens_maps: Tensor | None, complex_mode: str,
                    phase: str | Tensor | None, grid: tuple[int, int] | None,
                    noise: float) -> Callable[[list[int]], Problem]:
    """:attr:`Problem.select` of an MRI problem: its slices rebuilt with the batch's resolved decisions."""
    kspace = kspace.unsqueeze(0) if kspace.ndim == 3 else kspace
    b = int(kspace.shape[0])
    norm = problem.info["normalization"]
    fixed = {"method": "fixed", "values": list(norm["values"]), "range": list(norm["range"])}
    described = str(problem.info.get("phase", ""))

    def per_slice(value: Any) -> Callable[[list[int]], Any]:  # batch tensors are indexed, shared ones kept
        if isinstance(value, Tensor) and value.ndim == 4 and value.shape[0] == b and b > 1:
            return lambda index: value[index]
        return lambda index: value

    if isinstance(phase, Tensor):
        phase_of = per_slice(torch.as_tensor(phase).reshape(-1, 1, *phase.shape[-2:]))
    else:  # "auto" was decided on the whole batch: keep its decision
        resolved = "acs" if described.startswith("low-resolution") else None
        phase_of = per_slice(resolved)
    maps_of = per_slice(None if sens_maps is None else torch.as_tensor(sens_maps))
    mask_of = per_slice(torch.as_tensor(mask))

    def select(index: list[int]) -> Problem:
        return _mri_problem(kspace[index], mask_of(index), fixed, maps_of(index), complex_mode, phase_of(index),
                            "card", grid, noise)

    return select


def _mri_problem(kspace: Tensor, mask: Tensor, normalization: dict[str, Any], sens_maps: Tensor | None,
                 complex_mode: str, phase: str | Tensor | None, intensity: str | None,
                 grid: tuple[int, int] | None, noise: float = 0.0) -> Problem:
    """:func:`mri_problem` without the selector; ``noise``: the k-space noise std (:func:`kspace_noise_std`)."""
    kspace = torch.as_tensor(kspace)
    if kspace.ndim == 3:
        kspace = kspace.unsqueeze(0)
    if kspace.ndim != 4 or not kspace.is_complex():
        raise ValueError(f"expected complex k-space (B, C, H, W), got {tuple(kspace.shape)} {kspace.dtype}")
    if complex_mode not in ("real", "channels"):
        raise ValueError("complex_mode must be 'real' or 'channels'")
    b, c, h, w = kspace.shape
    mask = torch.as_tensor(mask, dtype=torch.float32)
    kspace = kspace.to(torch.complex64) * mask
    if grid is not None and tuple(int(g) for g in grid) != (h, w):
        return _resampled_problem(kspace, mask, normalization, sens_maps, complex_mode, phase, intensity, grid,
                                  noise)
    if c > 1 and sens_maps is None:
        raise ValueError("multi-coil k-space needs sens_maps (e.g. ESPIRiT from the ACS block)")
    value_range = tuple(normalization.get("range", (-1.0, 1.0)))
    rule = intensity is None
    intensity = intensity_mode(normalization) if rule else intensity
    if intensity == "auto":
        normalization = _auto_normalization(kspace, sens_maps, normalization)
    elif intensity != "card":
        raise ValueError("intensity must be None, 'card' or 'auto'")
    a, off = affine_from_normalization(normalization)
    solver_defaults, noise_info = noise_weighted_defaults(noise / a)
    info: dict[str, Any] = {"complex_mode": complex_mode, "intensity": intensity, "noise": noise_info,
                            "intensity_from": "the card's rule (fixed window only for physical units)" if rule
                            else "the caller",
                            "normalization": {"values": [float(v) for v in normalization["values"]],
                                              "range": [float(v) for v in value_range]},
                            "coils": c}
    phase_map = None
    if complex_mode == "real":
        if isinstance(phase, str) and phase == "auto":
            phase = "acs"
            if c == 1:  # the symmetric ACS block of a real image gives a real low-resolution image
                low = ifft2c(kspace * _hann_block((h, w), acs_size(mask)))
                phase = None if float(low.imag.norm() / low.abs().norm().clamp_min(1e-30)) < 1e-3 else "acs"
        if isinstance(phase, str):
            if phase != "acs":
                raise ValueError("phase must be None, 'auto', 'acs' or a tensor")
            phase_map = lowres_phase(kspace, mask, sens_maps)
            info["phase"] = f"low-resolution ACS phase ({'x'.join(map(str, acs_size(mask)))} Hann-windowed block)"
        elif phase is not None:
            phase_map = torch.as_tensor(phase, dtype=torch.float32).reshape(-1, 1, h, w)
            info["phase"] = "given"
        else:
            info["phase"] = "none (real image)"
    if complex_mode == "real" and (phase_map is not None or c > 1):
        maps = torch.ones((1, 1, h, w), dtype=torch.complex64) if sens_maps is None else torch.as_tensor(sens_maps)
        maps = maps.to(torch.complex64).reshape(-1, c, h, w)
        if phase_map is not None:
            maps = maps * torch.exp(1j * phase_map).to(torch.complex64)
        physical = MulticoilMRI(mask, maps)
    elif c > 1:
        physical = MulticoilMRI(mask, torch.as_tensor(sens_maps).to(torch.complex64))
    else:
        physical = CartesianMRI(mask)
    y_phys = torch.view_as_real(kspace).permute(0, 1, 4, 2, 3).reshape(b, 2 * c, h, w).contiguous()
    if complex_mode == "real":
        operator = ModelSpaceOperator(physical, _real_embed, _real_part, scale=1.0, dagger_iter=10)
        shape = (b, 1, h, w)
        ones = _real_embed(torch.ones(shape))
    else:
        operator = physical if isinstance(physical, CartesianMRI) else ModelSpaceOperator(physical, dagger_iter=10)
        shape = (b, 2, h, w)
        ones = torch.ones(shape)
    y_model = (y_phys - off * physical.A(ones)) / a
    if complex_mode == "real":
        def to_physical(m: Tensor) -> Tensor:
            x = channels_to_complex(_real_embed(a * m + off))
            return x if phase_map is None else x * torch.exp(1j * phase_map.to(x.device)).to(x.dtype)

        def from_physical(x: Tensor) -> Tensor:  # the real image in the phase's frame
            x = torch.as_tensor(x).to(torch.complex64).reshape(-1, 1, h, w)
            if phase_map is not None:
                x = x * torch.exp(-1j * phase_map.to(x.device)).to(x.dtype)
            return (x.real - off) / a
    else:
        def to_physical(m: Tensor) -> Tensor:
            return channels_to_complex(a * m + off)

        def from_physical(x: Tensor) -> Tensor:
            return (complex_to_channels(torch.as_tensor(x).to(torch.complex64).reshape(-1, 1, h, w)) - off) / a
    return Problem(operator, y_model, shape, to_physical, info, channels_as_batch=complex_mode == "channels",
                   from_physical=from_physical, solver_defaults=solver_defaults)


def _resampled_problem(kspace: Tensor, mask: Tensor, normalization: dict[str, Any], sens_maps: Tensor | None,
                       complex_mode: str, phase: str | Tensor | None, intensity: str | None,
                       grid: tuple[int, int], noise: float = 0.0) -> Problem:
    """:func:`mri_problem` on a ``grid`` matrix over the same FOV (another pixel size), mapped back after.

    Zero-padding k-space adds unmeasured outer frequencies (mask 0); cropping sets the outer
    measured lines aside, and :attr:`Problem.to_physical` puts them back on the input's grid
    (single coil: as measured; multi-coil: SENSE-combined with the maps), so the data a crop
    leaves out still reach the result. See :mod:`scorerecon.pipelines.tasks.grid`.
    """
    from scorerecon.pipelines.tasks.grid import centre_crop_pad, fourier_resample, kept_band

    b, c, h, w = kspace.shape
    grid = (int(grid[0]), int(grid[1]))
    scale = math.sqrt(grid[0] * grid[1] / float(h * w))
    band = kept_band((h, w), grid)
    k_grid = centre_crop_pad(kspace * band, grid, nyquist=True) * scale
    m_grid = (centre_crop_pad((mask * band).reshape(1, h, w), grid, nyquist=True)[0] > 0).to(torch.float32)
    maps = None if sens_maps is None else fourier_resample(torch.as_tensor(sens_maps), grid)
    if isinstance(phase, Tensor):
        phase = torch.angle(fourier_resample(torch.exp(1j * phase.reshape(-1, 1, h, w)), grid))
    inner = _mri_problem(k_grid, m_grid, normalization, maps, complex_mode, phase, intensity, None, noise * scale)
    aside = kspace * (1.0 - band)  # measured lines the grid does not hold (a crop); nothing for a pad
    native_maps = None if sens_maps is None else torch.as_tensor(sens_maps).to(torch.complex64).reshape(-1, c, h, w)

    cropped = bool((band < 1).any())

    def to_physical(m: Tensor) -> Tensor:
        x = fourier_resample(inner.to_physical(m), (h, w))
        if cropped:  # the lines the grid did not hold: as measured (zero where unmeasured)
            x = ifft2c(fft2c(x) * band.to(x.device))
            extra = ifft2c(aside.to(x.device))
            if native_maps is not None:
                maps_ = native_maps.to(x.device)
                extra = (maps_.conj() * extra).sum(1, keepdim=True) / (maps_.abs() ** 2).sum(1, keepdim=True).clamp_min(
                    1e-12)
            x = x + extra
        return x

    def from_physical(x: Tensor) -> Tensor:
        return inner.from_physical(fourier_resample(torch.as_tensor(x).reshape(-1, 1, h, w), grid))

    info = {**inner.info, "grid": {"shape": list(grid), "input_shape": [h, w], "kspace": "zero-padded (unmeasured)"
                                   if grid[0] >= h and grid[1] >= w else "cropped; outer measured lines restored "
                                   "on the input grid", "scale": scale}}
    return Problem(inner.operator, inner.y, inner.shape, to_physical, info, inner.channels_as_batch,
                   inner.solver_defaults, from_physical)


def reconstruct_mri(kspace: Tensor, mask: Tensor, model: Any, solver: str = "dds", nfe: int = 50, seed: int = 0,
                    sens_maps: Tensor | None = None, complex_mode: str = "real", phase: str | Tensor | None = "auto",
                    intensity: str | None = None, n_samples: int = 1, device: torch.device | str = "cpu",
                    **overrides: Any) -> Reconstruction:
    """Score-based MRI reconstruction of a batch of slices; ``.image`` is complex ``(B, 1, H, W)``.

    ``model``: a loaded score model with a model card (:func:`~scorerecon.models.checkpoint.
    load_score_model`); its ``data.normalization`` defines the model space. Other arguments as
    :func:`mri_problem` and :func:`scorerecon.pipelines.tasks.reconstruct`.
    """
    problem = mri_problem(kspace, mask, model.card["data"]["normalization"], sens_maps, complex_mode, phase, intensity)
    return _reconstruct(problem, model, solver, nfe=nfe, seed=seed, n_samples=n_samples, device=device, **overrides)


def mri_baselines(kspace: Tensor, mask: Tensor, sens_maps: Tensor | None = None,
                  methods: tuple[str, ...] = MRI_BASELINES, tv_iter: int = 200,
                  wavelet_iter: int = 100) -> dict[str, tuple[Tensor, float]]:
    """Classical reconstructions ``{name: (complex image (B, 1, H, W), seconds)}``.

    ``zero_filled`` (``A^H y``), ``tv`` (sigpy ``TotalVariationRecon``) and ``l1_wavelet`` (sigpy
    ``L1WaveletRecon``), with the lambdas tuned on training slices in
    :mod:`scorerecon.modalities.mri.baselines`.
    """
    kspace = torch.as_tensor(kspace) * torch.as_tensor(mask, dtype=torch.float32)
    out: dict[str, tuple[Tensor, float]] = {}
    for name in methods:
        start = time.perf_counter()
        if name == "zero_filled":
            img = zero_filled(kspace, sens_maps)
        elif name == "tv":
            img = tv_recon(kspace, mask, sens_maps, max_iter=tv_iter)
        elif name == "l1_wavelet":
            img = l1_wavelet_recon(kspace, mask, sens_maps, max_iter=wavelet_iter)
        else:
            raise ValueError(f"unknown MRI baseline {name!r}; expected one of {list(MRI_BASELINES)}")
        out[name] = (img, time.perf_counter() - start)
    return out


def mask_info(kind: str, acceleration: float, mask: Tensor, seed: int, axis: int = -1) -> dict[str, Any]:
    """JSON-able description of a mask for provenance and result tables."""
    info = {"kind": kind, "acceleration": float(acceleration), "realised_acceleration": round(acceleration_of(mask), 3),
            "seed": int(seed), "shape": list(mask.shape), "lines_along": "columns (kx)" if axis == -1 else "rows (ky)"}
    if kind in ("random", "random1d", "equispaced", "equispaced1d"):
        info["center_fraction"] = default_center_fraction(acceleration)
    return info
