"""``scorerecon reconstruct``: score-based reconstruction of a store's measurements into a new store.

MRI (``--task mri``) reads a k-space store (``kspace``, dims ``(coil, z, ky, kx)``, e.g. the
ingested twix phantom), or an MR image store (``image``, ``(z, y, x)``), from which noise-free
single-coil k-space is simulated (a real object: no phase). Fully sampled data are undersampled
retrospectively along the phase-encode axis ``ky`` (``--mask random|equispaced|poisson --accel
R``); ``--mask none`` takes the data as given (the sampling pattern is read off the non-zero
k-space). Readout oversampling recorded by the reader is removed first (crop of the central FOV
along ``kx``). Multi-coil data get ESPIRiT maps from the fully sampled centre (``--calib``); the
image phase is estimated from the same ACS block and folded into the forward model so the
magnitude prior sees a real image (``--complex-mode real``, default), or real and imaginary parts
are reconstructed as two images (``--complex-mode channels``, score-MRI); see
:mod:`scorerecon.pipelines.tasks.mri`. Intensities are mapped to the prior's range from the data
(``--intensity auto``, the default for every prior whose card normalisation is not a fixed
physical window) unless they are in its training units (``card``).

CT (``--task ct``) reads either an image store (``image``, HU, ``(z, y, x)``), from which a
noise-free sinogram is simulated (``--views N`` or ``--arc DEG``), or a sinogram store
(``sinogram``, dims ``(z, angle, det)``, line integrals, ``angle`` coordinate in degrees, attrs
``image_size`` and ``pixel_size_mm``).

Several slices with ``--tv-z LAM > 0`` are reconstructed as one volume (2-D prior + TV along z by
ADMM, DiffusionMBIR; :mod:`scorerecon.pipelines.tasks.volume`). ``--samples N > 1`` draws ``N``
posterior samples and stores their mean (``image``) and per-voxel std (``std``).

Pan-sharpening and cloud removal (``--task pansharpen|cloud``) run conditional models over
georeferenced scenes in tiles; they live in :mod:`scorerecon.pipelines.reconstruct_remote`.
Photographs (``--task sr|deblur|denoise|inpaint|lowlight``) are restored by
:mod:`scorerecon.pipelines.reconstruct_natural`. Every task's choices and defaults (solvers,
prior, NFE, samples) and the module that runs it come from the task registry
(:mod:`scorerecon.pipelines.tasks.registry`); this module runs MRI and CT.

Image-store inputs of both tasks may be block-averaged (``--downsample F``) and centre-cropped
(``--crop N``) first. An input holding NaN/Inf values is refused unless ``--nonfinite mask`` fills
them, records how many per slice and writes the voxels made from them back as NaN
(:mod:`scorerecon.pipelines.nonfinite`).

The output store (written atomically) holds ``image`` ``(z, y, x)`` float32 -- magnitude for MRI,
HU for CT -- on a grid that keeps the input's place in space: the RAS ``affine`` composed with the
slice subset, block means and crops, coordinates in the input's frame, ``source_slice`` (the
input's z index of each slice) and, for a DICOM-ingested input, the source DICOM record of the
kept slices, so ``scorerecon export --format nifti|dicom`` writes it in place (DICOM: a derived
series referencing its source instances). K-space and sinogram stores without an ``affine`` get
the grid their field-of-view facts give (:func:`~scorerecon.modalities.io.grid.kspace_image_grid`).
Attrs record the input stores and their source files' sha256, the prior and its sha256, the
command and options, solver settings, NFE, seeds, mask or geometry, complex handling, software
versions, timings and hardware (:func:`~scorerecon.pipelines.record.finish_output`).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

from scorerecon.pipelines.errors import InputError
from scorerecon.pipelines.options import (
    DEVICE_HELP,
    add_engine_arguments,
    device,
    engine_config,
    float_range,
    int_range,
    output_path,
    remember_defaults,
)


def _select_slices(n: int, text: str | None, store: Path) -> list[int]:
    from scorerecon.pipelines.evaluate import parse_slices

    slices = list(range(n)) if text is None else parse_slices(text)
    bad = [s for s in slices if not 0 <= s < n]
    if bad:
        raise InputError(store, f"slices {bad} outside the store (z has {n} slices)")
    return slices


def _remove_oversampling(kspace: np.ndarray, factor: int) -> np.ndarray:
    """Crop the central ``1 / factor`` of the FOV along ``kx`` (image domain), back to k-space."""
    from scorerecon.modalities.io.kspace import image_to_kspace, kspace_to_image

    img = kspace_to_image(kspace)
    w = img.shape[-1]
    keep = w // factor
    start = (w - keep) // 2
    return image_to_kspace(img[..., start:start + keep]).astype(np.complex64)


def _kspace_input(args: argparse.Namespace, ds: Any, slices: list[int]) -> tuple[np.ndarray, Any, dict[str, Any]]:
    """Measured k-space ``(S, C, ky, kx)`` of ``slices`` (readout oversampling removed) and its grid."""
    from scorerecon.modalities.io.grid import axis_map, centre_map, kspace_image_grid
    from scorerecon.modalities.io.store import attrs_json
    from scorerecon.pipelines.nonfinite import screen_of
    from scorerecon.pipelines.record import default_geometry

    da = ds["kspace"]
    raw = screen_of(args).load(da, slices)  # (C, S, ky, kx); NaN/Inf refused or filled (--nonfinite)
    raw = np.ascontiguousarray(np.moveaxis(raw, 1, 0)).astype(np.complex64)  # (S, C, ky, kx)
    info: dict[str, Any] = {"input": "k-space from the store"}
    nky, nkx = raw.shape[-2:]
    affine, grid_source = kspace_image_grid(ds.attrs, (int(da.sizes["z"]), nky, nkx))
    in_plane = axis_map()
    over = attrs_json(ds, "readout_oversampling")
    factor = int(round(float(over))) if isinstance(over, (int, float)) and not isinstance(over, bool) else 1
    if factor > 1 and not args.keep_oversampling:
        raw = _remove_oversampling(raw, factor)
        info["readout_oversampling_removed"] = factor
        in_plane = centre_map((nky, nkx), raw.shape[-2:])
    geometry = default_geometry(affine, grid_source, slices, in_plane, raw.shape[-2:])
    return raw, geometry, info


def _image_slices(args: argparse.Namespace, ds: Any) -> int:
    """The number of slices of an image store ``(z, y, x)`` (one line naming the store if it is not one)."""
    if tuple(ds["image"].dims) != ("z", "y", "x"):
        raise InputError(args.input, f"'image' must have dims (z, y, x), got {ds['image'].dims}")
    return int(ds["image"].sizes["z"])


def _image_input(args: argparse.Namespace, ds: Any, square: bool, slices: list[int]) -> tuple[np.ndarray, Any, float]:
    """``slices`` of an image store, cropped / block-averaged (``--crop``, ``--downsample``), and their grid.

    Returns the float32 slices ``(S, H, W)``, their :class:`~scorerecon.pipelines.record.Geometry`
    and the output pixel size in mm (the store's ``x`` spacing times ``--downsample``; 1 mm without coordinates).
    """
    from scorerecon.modalities.io.grid import prepare_slices_map
    from scorerecon.pipelines.evaluate import prepare_slices
    from scorerecon.pipelines.nonfinite import screen_of
    from scorerecon.pipelines.record import image_geometry

    da = ds["image"]
    images = screen_of(args).load(da, slices).astype(np.float32)  # NaN/Inf refused or filled (--nonfinite)
    spacing = float(abs(da.coords["x"].values[1] - da.coords["x"].values[0])) \
        if "x" in da.coords and da.sizes["x"] > 1 else 1.0
    in_plane, out_shape = prepare_slices_map(images.shape[-2:], args.crop, args.downsample, square=square)
    images = prepare_slices(images, args.crop, args.downsample, square=square)
    return images, image_geometry(ds, slices, in_plane, out_shape), spacing * args.downsample


def _input_statistics(load: Any, n_z: int, mask: np.ndarray | None, quantile: float) -> tuple[float, np.ndarray]:
    """The ``quantile`` of the zero-filled magnitude over EVERY slice of the input, and its sampled k-space.

    ``load(indices)`` gives k-space ``(S, C, ky, kx)`` of those slices (8 at a time here); the
    magnitude is the root-sum-of-squares over coils of the image of ``k * mask`` (``mask``
    ``None``: the data as acquired); the second result is the union of the sampled locations.
    Taken over the whole input rather than the selected slices, so that a slice's intensity
    scale and an as-acquired mask do not depend on which other slices ``--slices`` selects.
    """
    from scorerecon.modalities.io.kspace import kspace_to_image
    from scorerecon.modalities.mri.masks import sampling_mask

    magnitudes, sampled = [], None
    for z0 in range(0, n_z, 8):
        raw = load(list(range(z0, min(n_z, z0 + 8))))
        here = sampling_mask(raw).numpy() > 0
        sampled = here if sampled is None else sampled | here
        image = kspace_to_image(raw if mask is None else raw * mask)
        magnitudes.append(np.sqrt((np.abs(image) ** 2).sum(axis=1)).astype(np.float32).ravel())
    return float(np.quantile(np.concatenate(magnitudes), quantile)), sampled


def _mri(args: argparse.Namespace, model: Any) -> tuple[np.ndarray, np.ndarray | None, dict[str, Any], Any]:
    import torch

    from scorerecon.modalities.io.kspace import image_to_kspace
    from scorerecon.modalities.io.store import open_store
    from scorerecon.pipelines.evaluate import prepare_slices
    from scorerecon.pipelines.nonfinite import screen_of
    from scorerecon.pipelines.tasks import intensity_mode, reconstruct
    from scorerecon.pipelines.tasks.mri import mask_info, mri_problem, phase_encode_mask
    from scorerecon.pipelines.tasks.volume import reconstruct_volume

    ds = open_store(args.input)
    phase: str | None = "auto"
    if "kspace" in ds.data_vars:
        if tuple(ds["kspace"].dims) != ("coil", "z", "ky", "kx"):
            raise InputError(args.input, f"'kspace' must have dims (coil, z, ky, kx), got {ds['kspace'].dims}")
        n_z = int(ds["kspace"].sizes["z"])
        slices = _select_slices(n_z, args.slices, args.input)
        raw, geometry, info = _kspace_input(args, ds, slices)

        def load(indices: list[int]) -> np.ndarray:
            return _kspace_input(args, ds, indices)[0]
    elif "image" in ds.data_vars:  # a magnitude image: single-coil k-space simulated from it (a real object)
        n_z = _image_slices(args, ds)
        slices = _select_slices(n_z, args.slices, args.input)

        def simulate(images: np.ndarray) -> np.ndarray:
            return image_to_kspace(images.astype(np.complex64))[:, None].astype(np.complex64)

        def load(indices: list[int]) -> np.ndarray:
            return simulate(_image_input(args, ds, False, indices)[0])

        images, geometry, _ = _image_input(args, ds, False, slices)
        raw = simulate(images)
        info = {"input": "single-coil k-space simulated (noise-free) from the store's magnitude image",
                "crop": args.crop, "downsample": args.downsample}
        phase = None
    else:
        raise InputError(args.input, f"store holds neither 'kspace' nor 'image' (it has: "
                                     f"{', '.join(map(str, ds.data_vars))}); --task mri needs a k-space store "
                                     "(scorerecon ingest RAW.dat|.h5|.cfl|.npy) or an MR image store")
    s, c, h, w = raw.shape
    normalization = dict(model.card["data"]["normalization"])
    intensity = args.intensity or intensity_mode(normalization)
    quantile = float((normalization.get("percentiles") or (0.5, 99.5))[1]) / 100.0
    reference = None
    if args.mask in ("auto", "none"):  # the sampling pattern of the whole input, not of the selected slices
        reference, sampled = _input_statistics(load, n_z, None, quantile)
    if args.mask == "auto":  # data acquired undersampled (unacquired samples are zeros) are taken as acquired
        args.mask = "none" if float(sampled.mean()) < 0.95 else "random"
    if args.mask == "none":
        mask = torch.from_numpy(sampled.astype(np.float32))
        info["mask"] = {"kind": "as acquired (every sampled location of the input)",
                        "realised_acceleration": round(float(mask.numel() / mask.sum()), 3)}
    else:
        if not args.accel > 1:
            raise InputError(None, f"--accel must be > 1 for retrospective undersampling, got {args.accel}")
        try:
            mask = phase_encode_mask(args.mask, (h, w), args.accel, seed=args.seed, axis=-2)
        except ValueError as exc:
            raise InputError(None, f"cannot build a {args.mask} mask at R={args.accel} for {h}x{w}: {exc}") from None
        info["mask"] = mask_info(args.mask, args.accel, mask, args.seed, axis=-2)
    mask = screen_of(args).drop_lines(mask)  # --nonfinite mask: ky lines that held NaN/Inf are not acquired
    if intensity == "auto":  # the percentile normalisation resolved on the whole input volume
        if reference is None or args.mask != "none":
            reference = _input_statistics(load, n_z, mask.numpy(), quantile)[0]
        normalization = {**normalization, "values": [0.0, max(reference, 1e-12)], "percentile": quantile * 100,
                         "of": f"zero-filled magnitude (root-sum-of-squares over coils) of all {n_z} slice(s) "
                               "of the input"}
    kspace = torch.from_numpy(raw) * mask
    maps = None
    if c > 1:
        from scorerecon.pipelines.tasks.mri import calibrate_coils

        try:
            maps, info["sens_maps"] = calibrate_coils(kspace, mask, args.calib)
        except ValueError as exc:
            raise InputError(args.input, f"{exc} (use a lower --accel or --mask poisson)") from None
        phase = None if info["sens_maps"]["phase_in_maps"] else phase
    from scorerecon.pipelines.tasks.grid import geometry_pixel_mm, plan_grid

    info["grid"] = plan_grid(model.card, (h, w), geometry_pixel_mm(geometry.attrs), not args.no_resample)
    problem = mri_problem(kspace, mask, normalization, maps, args.complex_mode, phase=phase,
                          intensity="card" if intensity == "auto" else intensity,
                          grid=tuple(info["grid"]["shape"]) if info["grid"]["resampled"] else None,
                          noise="estimate" if "kspace" in ds.data_vars else 0.0)  # measured vs simulated
    problem.slice_ids = slices  # each slice's noise stream is named by its z index in the input
    if intensity == "auto":
        problem.info.update(intensity="auto", intensity_from="the whole input volume (reconstruct)")
    info["complex_handling"] = problem.info
    init = None
    if args.warm_start not in (None, "none"):
        from scorerecon.pipelines.tasks.mri import MRI_BASELINES, mri_baselines

        if args.warm_start not in MRI_BASELINES:
            raise InputError(None, f"--warm-start {args.warm_start!r}: choose from {list(MRI_BASELINES)} or none")
        init = mri_baselines(kspace, mask, maps, (args.warm_start,))[args.warm_start][0]
    rec = _solve(args, problem, model, reconstruct, reconstruct_volume, init)
    image = rec.image.abs()[:, 0].cpu().numpy()
    std = None if rec.std is None else rec.std[:, 0].cpu().numpy()
    screen_of(args).mark_output(info, slices, (image, std), lambda m: prepare_slices(m, args.crop, args.downsample))
    info.update(_solver_record(args, rec))
    return image, std, info, geometry


def _ct(args: argparse.Namespace, model: Any) -> tuple[np.ndarray, np.ndarray | None, dict[str, Any], Any]:
    import torch

    from scorerecon.modalities.ct.geometry import ParallelBeamGeometry
    from scorerecon.modalities.io.grid import axis_map, centred_grid, stated_affine
    from scorerecon.modalities.io.store import open_store
    from scorerecon.pipelines.evaluate import prepare_slices
    from scorerecon.pipelines.nonfinite import screen_of
    from scorerecon.pipelines.record import default_geometry
    from scorerecon.pipelines.tasks import reconstruct
    from scorerecon.pipelines.tasks.ct import ct_geometry, ct_problem, simulate_sinogram
    from scorerecon.pipelines.tasks.volume import reconstruct_volume

    ds = open_store(args.input)
    info: dict[str, Any] = {}
    if "sinogram" in ds.data_vars:
        da = ds["sinogram"]
        if tuple(da.dims) != ("z", "angle", "det") or "angle" not in da.coords:
            raise InputError(args.input, "'sinogram' must have dims (z, angle, det) with an angle coordinate "
                                         f"(degrees), got {da.dims}")
        try:
            n, pixel_mm = int(ds.attrs["image_size"]), float(ds.attrs["pixel_size_mm"])
        except (KeyError, TypeError, ValueError):
            raise InputError(args.input, "sinogram store needs attrs image_size and pixel_size_mm") from None
        geometry = ParallelBeamGeometry(n, tuple(float(a) for a in da.coords["angle"].values), int(da.sizes["det"]))
        slices = _select_slices(int(da.sizes["z"]), args.slices, args.input)
        sino = torch.from_numpy(screen_of(args).load(da, slices).astype(np.float32))[:, None]  # --nonfinite
        info["measurement"] = "sinogram from the store"
        affine = stated_affine(ds.attrs.get("affine"))
        grid_source = "the sinogram store's affine attr"
        if affine is None:
            thickness = float(ds.attrs.get("slice_spacing_mm") or 1.0)
            affine = centred_grid((pixel_mm, pixel_mm, thickness), (int(da.sizes["z"]), n, n))
            grid_source = (f"pixel_size_mm {pixel_mm:g}, slice_spacing_mm {thickness:g} (1 when absent); "
                           "orientation and position unknown (x->R, y->A, z->S, centred)")
        out_geometry = default_geometry(affine, grid_source, slices, axis_map(), (n, n))
    elif "image" in ds.data_vars:
        if (args.views is None) == (args.arc is None):
            raise InputError(None, "an image store needs exactly one of --views N or --arc DEG to simulate a sinogram")
        slices = _select_slices(_image_slices(args, ds), args.slices, args.input)
        hu, out_geometry, pixel_mm = _image_input(args, ds, True, slices)
        try:
            geometry = ct_geometry(hu.shape[-1], args.views, args.arc)
        except ValueError as exc:
            raise InputError(None, f"CT geometry: {exc}") from None
        sino = simulate_sinogram(torch.from_numpy(hu), geometry, pixel_mm)
        info["measurement"] = "noise-free sinogram simulated from the store's HU image"
        info.update(crop=args.crop, downsample=args.downsample)
    else:
        have = ", ".join(map(str, ds.data_vars))
        raise InputError(args.input, f"store holds neither 'image' nor 'sinogram' (it has: {have}); "
                                     "--task ct needs a CT image or sinogram store")
    from scorerecon.pipelines.tasks.grid import plan_grid

    n_in = geometry.image_size
    info["grid"] = plan_grid(model.card, (n_in, n_in), (pixel_mm, pixel_mm), not args.no_resample)
    problem = ct_problem(sino, geometry, pixel_mm, model.card["data"]["normalization"],
                         grid=info["grid"]["shape"][1] if info["grid"]["resampled"] else None)
    problem.slice_ids = slices  # each slice's noise stream is named by its z index in the input
    info["geometry"] = geometry.config()
    info["pixel_size_mm"] = pixel_mm
    init = None
    if args.warm_start not in (None, "none"):
        from scorerecon.pipelines.tasks.ct import CT_BASELINES, ct_baselines

        if args.warm_start not in CT_BASELINES:
            raise InputError(None, f"--warm-start {args.warm_start!r}: choose from {list(CT_BASELINES)} or none")
        init = ct_baselines(sino, geometry, pixel_mm, (args.warm_start,))[args.warm_start][0]
    rec = _solve(args, problem, model, reconstruct, reconstruct_volume, init)
    image = rec.image[:, 0].cpu().numpy()
    std = None if rec.std is None else rec.std[:, 0].cpu().numpy()
    screen_of(args).mark_output(info, slices, (image, std),
                                lambda m: prepare_slices(m, args.crop, args.downsample, square=True))
    info.update(_solver_record(args, rec))
    return image, std, info, out_geometry


def _solve(args: argparse.Namespace, problem: Any, model: Any, reconstruct: Any, reconstruct_volume: Any,
           init: Any = None) -> Any:
    import torch

    warm = {} if init is None else {"init": init, "t_start": args.t0}  # warm start (CCDF) from a baseline
    engine = engine_config(args)  # the tile engine: planned batches, precision, compile
    with torch.no_grad():
        if args.tv_z > 0 and problem.shape[0] > 1:
            return reconstruct_volume(problem, model, args.solver, nfe=args.nfe, seed=args.seed, tv_z=args.tv_z,
                                      n_samples=args.samples, device=args.device, engine=engine, **warm)
        if _tv_xy(args) > 0:  # the DDS data step with in-plane TV (pipelines/tasks/tv_admm.py)
            warm["tv_xy"] = _tv_xy(args)
        return reconstruct(problem, model, args.solver, nfe=args.nfe, seed=args.seed, n_samples=args.samples,
                           device=args.device, engine=engine, **warm)


def _tv_xy(args: argparse.Namespace) -> float:
    """The in-plane TV weight this run's data step uses: 0 unless the solver is dds and no TV along z runs."""
    from scorerecon.pipelines.tasks import TV_XY, TV_XY_SOLVERS

    asked = getattr(args, "tv_xy", None)
    weight = TV_XY.get(args.task, 0.0) if asked is None else float(asked)
    if weight < 0:
        raise InputError(None, f"--tv-xy must be >= 0, got {weight}")
    if asked is not None and weight > 0:  # asked for explicitly: refuse what would silently drop it
        if args.solver not in TV_XY_SOLVERS:
            raise InputError(None, f"--tv-xy acts in the data step of solver {'/'.join(TV_XY_SOLVERS)}, "
                                   f"not {args.solver!r}: drop --tv-xy or use --solver dds")
        if args.tv_z > 0:
            raise InputError(None, "--tv-xy and --tv-z do not combine (--tv-z runs the volume ADMM): pick one")
    return weight if args.solver in TV_XY_SOLVERS and not args.tv_z > 0 else 0.0


def _solver_record(args: argparse.Namespace, rec: Any) -> dict[str, Any]:
    return {"solver": rec.solver, "solver_settings": rec.spec, "nfe": rec.nfe, "nfe_budget": args.nfe,
            "seed": args.seed, "seeds": rec.seeds, "samples": args.samples, "tv_z": args.tv_z, "tv_xy": _tv_xy(args),
            "volume_mode": "2d prior + TV-z ADMM" if args.tv_z > 0 else "slice by slice",
            "warm_start": None if args.warm_start in (None, "none") else {"from": args.warm_start, "t0": args.t0},
            "sampling_seconds": round(rec.seconds, 3), "execution": rec.execution}


def _run(args: argparse.Namespace) -> int:
    """Fill the task's defaults from the registry, check the solver, run the task's module."""
    import torch

    from scorerecon.pipelines.options import given_options
    from scorerecon.pipelines.tasks.registry import get_task, refuse_foreign_options, resolve

    task = get_task(args.task)
    refuse_foreign_options(task.name, given_options(args))
    if args.threads:
        torch.set_num_threads(args.threads)
    args.solver = args.solver or task.default_solver
    if args.solver not in task.solvers:
        raise InputError(None, f"--solver {args.solver!r} is not a --task {task.name} solver; choose from "
                               f"{', '.join(task.solvers)}")
    if args.nfe is None:
        args.nfe = task.nfe
    engine_config(args)  # a precision the device lacks is refused before any input is read
    return int(resolve(task.reconstruct)(args))


def run_medical(args: argparse.Namespace) -> int:
    """``scorerecon reconstruct --task mri|ct`` (``args.solver`` / ``args.nfe`` defaulted by ``_run``)."""
    import xarray as xr

    from scorerecon.modalities.io.outputs import check_output
    from scorerecon.modalities.io.store import open_store, write_store
    from scorerecon.models.checkpoint import load_score_model
    from scorerecon.pipelines.record import finish_output
    from scorerecon.pipelines.tasks.registry import get_task

    if args.samples is None:
        args.samples = get_task(args.task).samples
    from scorerecon.pipelines.tasks import WARM_START, WARM_T0  # the warm start by default

    args.warm_start = WARM_START[args.task] if args.warm_start == "default" else args.warm_start
    args.t0 = WARM_T0 if args.t0 is None else args.t0
    if args.nfe < 1 or args.samples < 1:
        raise InputError(None, "--nfe and --samples must be >= 1")
    if args.downsample < 1:
        raise InputError(None, "--downsample must be >= 1")
    check_output(args.output, "dir", args.overwrite, protect=[args.input])  # before the prior is loaded
    open_store(args.input)  # a missing or incomplete store fails before the prior is loaded
    checkpoint = args.checkpoint or get_task(args.task).prior_for(args.solver)
    model = load_score_model(checkpoint, device=args.device)
    model.eval()
    start = time.perf_counter()
    image, std, info, geometry = (_mri if args.task == "mri" else _ct)(args, model)
    seconds = time.perf_counter() - start
    dims = ("z", "y", "x")
    data = {"image": (dims, image.astype(np.float32))}
    if std is not None:
        data["std"] = (dims, std.astype(np.float32))
    ds = xr.Dataset(data)
    ds["image"].attrs["units"] = "HU" if args.task == "ct" else "magnitude (input k-space units)"
    if std is not None:
        ds["std"].attrs["description"] = f"per-voxel std of the magnitude over {args.samples} posterior samples"
    ds = finish_output(ds, task=args.task, args=args, model=model, checkpoint=model.checkpoint_path,
                       inputs=[(args.input, "/")],
                       info=info, seconds=seconds, reader="scorerecon.pipelines.reconstruct", geometry=geometry,
                       modality="CT" if args.task == "ct" else "MR").chunk({"z": 1})
    write_store(ds, args.output, overwrite=args.overwrite)
    if not args.quiet:
        print(f"wrote {args.output}: {ds.sizes['z']} slice(s), {args.solver}, {info['nfe']} NFE, {seconds:.1f} s")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    from scorerecon.pipelines.tasks.registry import TASKS

    def per_task(text: Any) -> str:  # "mri, ct: A; sr, ...: B": tasks sharing a value named together
        groups: dict[str, list[str]] = {}
        for t in TASKS.values():
            groups.setdefault(str(text(t)), []).append(t.name)
        return "; ".join(f"{', '.join(names)}: {value}" for value, names in groups.items())

    parser = subparsers.add_parser("reconstruct",
                                   help="score-based reconstruction of a store or photograph into a new store",
                                   description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", choices=tuple(TASKS), required=True, help="what to reconstruct (docs/tasks.md)")
    parser.add_argument("--input", type=Path, required=True, help=per_task(lambda t: t.reconstruct_input))
    parser.add_argument("-o", "--output", type=output_path, required=True, help="output Zarr store")
    parser.add_argument("--checkpoint", default=None,
                        help="prior: a name or path, found from any folder (docs/checkpoints.md; default: the "
                             "solver's prior, " + per_task(lambda t: t.default_prior) + ")")
    parser.add_argument("--solver", default=None,
                        help="diffusion solver (default first): " + per_task(
                            lambda t: " | ".join([t.default_solver, *(s for s in t.solvers if s != t.default_solver)])))
    parser.add_argument("--nfe", type=int_range(1, 100_000), default=None,
                        help="network evaluations per sample (default " + per_task(lambda t: t.nfe) + ")")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--samples", type=int_range(1, 1000), default=None,
                        help="posterior samples; > 1 also writes a std map (default " + per_task(lambda t: t.samples)
                        + "; conditional photo models 4)")
    parser.add_argument("--slices", default=None, help="z indices (85,95 or 80:100[:step]); default all")
    parser.add_argument("--warm-start", default="default",
                        help="start the solver at --t0 from this classical reconstruction (mri: tv, l1_wavelet, "
                        "zero_filled; ct: tv, fbp, sart; default and none: from noise, see pipelines.tasks.WARM_START)")
    parser.add_argument("--t0", type=float, default=None, help="warm start: diffusion time to start at (default 0.1)")
    parser.add_argument("--no-resample", action="store_true",
                        help="mri/ct: keep the input's pixel grid even when it differs > 15%% from the prior's")
    parser.add_argument("--tv-z", type=float, default=0.0,
                        help="TV weight along z: > 0 reconstructs the slices as one volume (ADMM; solver dds/prox)")
    parser.add_argument("--tv-xy", type=float, default=None,
                        help="mri/ct: in-plane TV weight in the dds data step (default: pipelines.tasks.TV_XY; "
                        "0 = the plain DDS step; not combined with --tv-z)")
    from scorerecon.pipelines.nonfinite import add_argument as add_nonfinite

    add_nonfinite(parser)
    mri = parser.add_argument_group("MRI")
    mri.add_argument("--mask", default="auto", choices=("auto", "random", "equispaced", "poisson", "none"),
                     help="retrospective undersampling along ky, or none: use the data as acquired (the non-zero "
                     "samples); auto (default): as acquired when the data are undersampled (< 95 %% of k-space "
                     "non-zero), else random")
    mri.add_argument("--accel", type=float, default=4.0, help="acceleration R (default 4)")
    mri.add_argument("--calib", type=int, default=24, help="ESPIRiT calibration width (default 24)")
    mri.add_argument("--complex-mode", choices=("real", "channels"), default="real")
    mri.add_argument("--intensity", choices=("auto", "card"), default=None,
                     help="auto: per-input normalisation; card: the prior's training units (default: the card's "
                          "rule, auto unless its normalisation is a fixed physical window)")
    mri.add_argument("--keep-oversampling", action="store_true", help="keep the readout oversampling")
    ct = parser.add_argument_group("CT; --crop: any image input; --downsample: any image store input")
    ct.add_argument("--views", type=int_range(1, 100_000), default=None, help="sparse view: views over [0, 180)")
    ct.add_argument("--arc", type=float_range(0, 360, lo_open=True), default=None, help="limited angle: arc in degrees")
    ct.add_argument("--crop", type=int_range(1, 4096), default=None, help="centre-crop slices to N x N")
    ct.add_argument("--downsample", type=int_range(1, 64), default=1, help="average F x F blocks first")
    from scorerecon.pipelines.reconstruct_natural import add_arguments as add_natural
    from scorerecon.pipelines.reconstruct_remote import add_arguments

    add_arguments(parser)
    add_natural(parser)
    parser.add_argument("--device", type=device, default="auto", help=DEVICE_HELP)
    parser.add_argument("--threads", type=int_range(1, 1024), default=None)
    add_engine_arguments(parser)
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument("--quiet", action="store_true")
    parser.set_defaults(func=_run)
    remember_defaults(parser)  # another task's option given is refused (the registry's Task.options)
