"""``scorerecon evaluate``: classical baselines vs. score-based solvers on held-out real slices.

MRI (``--task mri``): real magnitude slices of an image store (e.g. Colin27 T1) are the ground
truth; single-coil k-space is simulated from them (``fft2c`` of the real image, noise-free) and
undersampled retrospectively with a fastMRI-style mask (``--mask random|equispaced|poisson``,
``--accel R``, centre fraction ``0.32 / R``, one mask for all slices, seeded by ``--seed``). The
image is real, so the diffusion solvers use the real-image model (no phase; see
:mod:`scorerecon.pipelines.tasks.mri`), normalised per input (MR units are the scanner's, see
:func:`~scorerecon.pipelines.tasks.intensity_mode`). Baselines: zero-filled, sigpy TV and
L1-wavelet (lambdas tuned on training slices).

CT (``--task ct``): HU slices of an image store (e.g. the head CT) are the ground truth;
noise-free parallel-beam sinograms are simulated (``--views N`` uniform over [0, 180) or
``--arc DEG`` contiguous, 1 view/degree). Baselines: FBP, SART, TV (Chambolle-Pock).

Diffusion solvers (``--solvers``, default all of ``dc, projection, dps, dds, prox``; ``dds_tta`` on request) use the
checkpoint's prior with ``--nfe`` network evaluations each. Any data can be evaluated; only the
slices the prior was trained on are refused, recognised by content (the input's source sha256
and pixel fingerprints against the card's training sources, :mod:`scorerecon.pipelines.holdout`),
and the result says which data it is: ``"data": "unseen"`` or ``"held-out slices of a training
source"``. No setting here was tuned on evaluation slices.

Pixel spacing: when the input's in-plane pixel differs from the prior's training spacing by more
than 15 %, the diffusion solvers reconstruct on the prior's pixel size over the same field of
view and map back (k-space crop/pad for MRI, the projector at the new pixel size for CT; the
baselines stay on the input grid); ``params.grid`` records it (:mod:`scorerecon.pipelines.tasks.grid`).

Warm start (``--warm-start tv --t0 0.2``, CCDF): every diffusion solver starts at ``t0`` from the
named classical reconstruction diffused there; its NFE count only the steps run and its seconds
include the initialiser's.

Metrics (docs/conventions.md section 3): MRI fastMRI conventions on magnitudes (PSNR with data range = max
of the reference volume, SSIM per slice with skimage's 7x7 window, NMSE); CT on HU windowed to
[-1000, 400] -> [0, 1] with data range 1. The JSON (``--json``) is
``{"task", "convention", "params", "slices", "methods": {NAME: {"family", "psnr", "ssim", "nmse",
"nfe", "seconds", ...}}}``; a markdown table goes to stdout.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

from scorerecon.pipelines.errors import InputError
from scorerecon.pipelines.holdout import certify_slices
from scorerecon.pipelines.options import (
    DEVICE_HELP,
    add_engine_arguments,
    device,
    engine_config,
    float_range,
    given_options,
    int_range,
    output_file,
    remember_defaults,
)
from scorerecon.pipelines.tasks.grid import plan_grid
from scorerecon.pipelines.tasks.registry import TASKS, get_task, refuse_foreign_options, resolve

#: the metric conventions of the medical tasks (views of the task registry)
CONVENTIONS = {t: TASKS[t].convention for t in ("mri", "ct")}
MASK_KINDS = ("random", "equispaced", "poisson")


def parse_slices(text: str) -> list[int]:
    """``"80,90"``, ``"80:100"`` or ``"80:100:10"`` (half-open) -> sorted unique slice indices."""
    out: set[int] = set()
    try:
        for part in str(text).split(","):
            part = part.strip()
            if not part:
                continue
            if ":" in part:
                bits = [int(b) for b in part.split(":")]
                if len(bits) not in (2, 3):
                    raise ValueError(part)
                out.update(range(*bits))
            else:
                out.add(int(part))
    except ValueError:
        raise InputError(None, f"--slices {text!r}: expected integers like 80,90 or a range 80:100[:step]") from None
    if not out:
        raise InputError(None, f"--slices {text!r} selects no slice")
    return sorted(out)


def _load_slices(store: Path, slices: list[int], variable: str = "image", screen: Any = None,
                 ) -> tuple[np.ndarray, tuple[float, float] | None, list[dict[str, Any]]]:
    """Real slices ``(S, H, W)`` float32 of an image store, the in-plane pixel ``(dy, dx)`` in mm
    (``None`` without coordinates) and the store's source-file records (path, sha256).

    NaN/Inf voxels are refused, or filled by ``screen`` (a :class:`~scorerecon.pipelines.nonfinite.Screen`
    under ``--nonfinite mask``)."""
    from scorerecon.modalities.io.store import attrs_json, open_store
    from scorerecon.pipelines.nonfinite import Screen

    ds = open_store(store)
    if variable not in ds.data_vars:
        kinds = ", ".join(map(str, ds.data_vars))
        raise InputError(store, f"store holds no {variable!r} variable (it has: {kinds}); evaluate needs an image "
                                "store with the ground-truth slices (scorerecon ingest IMAGE.nii.gz)")
    da = ds[variable]
    if da.dims[-3:] != ("z", "y", "x") or np.iscomplexobj(np.empty(0, da.dtype)):
        raise InputError(store, f"{variable!r} must be a real (z, y, x) volume, got dims {da.dims} {da.dtype}")
    n = int(da.sizes["z"])
    outside = [s for s in slices if not 0 <= s < n]
    if outside:
        raise InputError(store, f"slices {outside} outside the volume (z has {n} slices)")
    screen = screen or Screen("refuse", store)
    data = screen.load(da.rename("image"), slices).astype(np.float32)
    step = [float(abs(da.coords[d].values[1] - da.coords[d].values[0])) if d in da.coords and da.sizes[d] > 1
            else 0.0 for d in ("y", "x")]
    spacing = (step[0] or step[1], step[1] or step[0]) if any(step) else None
    return data, spacing, list(attrs_json(ds, "source_files") or [])


def prepare_slices(images: np.ndarray, crop: int | None = None, downsample: int = 1, square: bool = False
                   ) -> np.ndarray:
    """Centre-crop to ``crop x crop`` (zero-pad where smaller) and/or average ``downsample^2`` blocks.

    ``square`` pads the result to a square (CT's projector needs ``N x N``).
    """
    out = np.asarray(images, dtype=np.float32)
    if downsample > 1:
        s, h, w = out.shape
        h2, w2 = h // downsample * downsample, w // downsample * downsample
        out = out[:, :h2, :w2].reshape(s, h2 // downsample, downsample, w2 // downsample, downsample).mean((2, 4))
    if crop:
        out = _centre(out, crop, crop)
    if square and out.shape[-1] != out.shape[-2]:
        n = max(out.shape[-2:])
        out = _centre(out, n, n)
    return np.ascontiguousarray(out, dtype=np.float32)


def _centre(x: np.ndarray, h: int, w: int) -> np.ndarray:
    s, H, W = x.shape
    out = np.empty((s, h, w), dtype=np.float32)  # pads take each slice's own minimum (batch-independent)
    out[:] = x.reshape(s, -1).min(axis=1)[:, None, None] if x.size else 0.0
    sh, sw = min(h, H), min(w, W)
    out[:, (h - sh) // 2:(h - sh) // 2 + sh, (w - sw) // 2:(w - sw) // 2 + sw] = \
        x[:, (H - sh) // 2:(H - sh) // 2 + sh, (W - sw) // 2:(W - sw) // 2 + sw]
    return out


def _simulate_multicoil(truth: np.ndarray, mask: Any, coils: int, coil_maps: str, seed: int
                        ) -> tuple[Any, Any, dict[str, Any]]:
    """Masked multi-coil k-space ``(S, C, H, W)`` of real slices, the maps to reconstruct with, and a record."""
    import torch

    from scorerecon.modalities.mri.coils import simulate_multicoil_kspace
    from scorerecon.pipelines.tasks.mri import acs_espirit_maps

    if coil_maps not in ("espirit", "true"):
        raise InputError(None, f"--coil-maps must be espirit or true, got {coil_maps!r}")
    sims = [simulate_multicoil_kspace(truth[i], n_coils=coils, seed=seed + i) for i in range(truth.shape[0])]
    kspace = torch.stack([s.kspace for s in sims]) * mask
    if coil_maps == "true":
        maps = torch.stack([s.sens_maps for s in sims])
        calib = None
    else:
        try:
            maps, calib = acs_espirit_maps(kspace, mask)
        except ValueError as exc:
            raise InputError(None, f"{exc}; use --coil-maps true, larger images or a lower --accel") from None
    record = {"coils": coils, "maps": "birdcage (sigpy), normalised", "phase": "smooth 2nd-order polynomial, "
              "max pi/2, seeded per slice", "reconstruction_maps": "ESPIRiT (sigpy) on the ACS block"
              if coil_maps == "espirit" else "the simulation's true maps", "calib_width": calib, "noise": "none"}
    return kspace, maps, record


def _entry(family: str, metrics: dict[str, Any], nfe: int, seconds: float, **extra: Any) -> dict[str, Any]:
    return {"family": family, "psnr": round(metrics["psnr"], 4), "ssim": round(metrics["ssim"], 5),
            "nmse": round(metrics["nmse"], 6), "nfe": int(nfe), "seconds": round(float(seconds), 3), **extra}


def evaluate(task: str, store: str | Path | None, slices: list[int], *, checkpoint: str | Path | None = None,
             accel: float = 4.0, mask: str = "random", views: int | None = None, arc: float | None = None,
             nfe: int | None = 50, seed: int = 0, solvers: list[str] | None = None, baselines: list[str] | None = None,
             crop: int | None = None, downsample: int = 1, device: str = "cpu",
             log: Any = None, variants: dict[str, dict[str, Any]] | None = None, coils: int = 1,
             coil_maps: str = "true", samples: int = 1, warm_start: str | None = "default", t0: float | None = None,
             resample: bool | str = True, images: np.ndarray | None = None,
             pixel_spacing: tuple[float, float] | None = None,
             source_files: list[dict[str, Any]] | None = None, tuning: bool = False,
             keep_images: bool = False, nonfinite: str = "refuse", engine: Any = None,
             tv_xy: float | str = "default") -> dict[str, Any]:
    """Run baselines and diffusion solvers on slices of ``store`` (or on ``images``); returns the result dict.

    ``images`` ``(S, H, W)`` replaces the store for data no reader ingests (e.g. a raw slice):
    then ``pixel_spacing`` ``(dy, dx)`` mm (``None``: unknown, no resampling), ``source_files``
    (``[{"path", "sha256"}]``, for the holdout check) and ``slices`` (their indices in the
    source) describe them and ``store`` is only a name. ``warm_start`` (a baseline name; ``"default"``:
    :data:`~scorerecon.pipelines.tasks.WARM_START`, ``None``/``"none"``: from noise) and ``t0``
    (default :data:`~scorerecon.pipelines.tasks.WARM_T0`) warm-start every solver (a variant's
    ``"warm_start"``/``"t0"`` keys set it for one run); ``tv_xy`` (``"default"``:
    :data:`~scorerecon.pipelines.tasks.TV_XY`) is the in-plane TV weight of the ``dds``
    data step (a variant's ``"tv_xy"`` key sets it for one run);
    ``resample=False`` keeps the solvers on the input grid whatever the prior's pixel spacing
    (``"always"`` also moves a finer input to the prior's coarser grid, see :func:`~scorerecon.
    pipelines.tasks.grid.plan_grid`).
    ``nonfinite="mask"`` fills NaN/Inf voxels of the store's slices (slice median) instead of refusing
    them; the filled slices are then the ground truth and ``params["nonfinite"]`` records the fill
    (:mod:`scorerecon.pipelines.nonfinite`).
    ``keep_images`` adds ``result["_panels"]``, the middle slice of every method as a
    :class:`~scorerecon.pipelines.panels.PanelSet` (``--images``; not JSON).
    ``tuning=True`` is for choosing settings on TRAINING slices (benchmarks only, never the CLI):
    the holdout check is skipped and the result says ``"data": "training slices (tuning only)"``.

    ``variants`` adds named runs of a solver with other settings, e.g. ``{"dc_pc1000": {"solver":
    "dc", "nfe": 1000, "sampler": "pc"}}`` (score-SDE's predictor-corrector sampler at 1000 NFE
    with the same data step), for few-step vs. many-step comparisons on the same model; a variant's
    ``"samples": N`` makes it the mean of N posterior samples (the MMSE estimate; NFE counted N times),
    and a variant's ``"tv_z": lam`` reconstructs the slices as one volume (consecutive slices: the
    2-D prior with TV along z, :func:`~scorerecon.pipelines.tasks.volume.reconstruct_volume`); a
    variant's ``"tv_xy": lam`` (a ``dds`` setting) adds in-plane TV to its data step
    (:class:`~scorerecon.pipelines.tasks.tv_admm.TVxyADMM`, slices independent).
    ``samples`` does that for every solver.
    ``coils > 1`` (MRI) simulates multi-coil k-space (birdcage maps + a smooth phase, seeded per
    slice); the baselines and solvers then use the simulation's maps (``coil_maps="true"``, the
    oracle-maps setting) or ESPIRiT maps from the mask's fully sampled centre (``"espirit"``, as
    with measured data; needs ~20+ ACS lines, i.e. full-size images at R = 4).
    """
    import torch

    from scorerecon.modalities.metrics import ct_metrics, image_metrics
    from scorerecon.models.checkpoint import load_score_model
    from scorerecon.pipelines.hardware import describe

    if task not in ("mri", "ct"):
        raise InputError(None, f"--task must be mri or ct, got {task!r}")
    offered = get_task(task).solvers
    solvers = [s for s in offered if s not in get_task(task).opt_in] if solvers is None else solvers
    bad = [s for s in solvers if s not in offered]
    if bad:
        raise InputError(None, f"unknown solver(s) {bad}; choose from {list(offered)}")
    _check_tv_xy_has_a_solver(tv_xy, solvers, variants)
    if baselines is not None:
        from scorerecon.pipelines.tasks.ct import CT_BASELINES
        from scorerecon.pipelines.tasks.mri import MRI_BASELINES

        known = MRI_BASELINES if task == "mri" else CT_BASELINES
        unknown = [b for b in baselines if b not in known]
        if unknown:
            raise InputError(None, f"unknown {task} baseline(s) {unknown}; choose from {list(known)}")
    nfe = 50 if nfe is None else int(nfe)
    if nfe < 1:
        raise InputError(None, f"--nfe must be >= 1, got {nfe}")
    checkpoint = str(checkpoint or get_task(task).priors["prior"])
    model = load_score_model(checkpoint, device=device)
    model.eval()
    from scorerecon.pipelines.nonfinite import Screen

    screen = Screen(nonfinite, None if images is not None else Path(str(store)))
    if images is None:
        raw, spacing, files = _load_slices(Path(str(store)), slices, screen=screen)
    else:
        raw = np.asarray(images, dtype=np.float32).reshape(-1, *np.shape(images)[-2:])
        spacing, files = pixel_spacing, list(source_files or [])
        if raw.shape[0] != len(slices):
            raise InputError(None, f"{raw.shape[0]} images for {len(slices)} slice indices")
    holdout = {"data": "training slices (tuning only)"} if tuning else \
        certify_slices(model.card, slices, files, raw, checkpoint)
    truth = prepare_slices(raw, crop, downsample, square=task == "ct")
    pixel = None if spacing is None else (spacing[0] * downsample, spacing[1] * downsample)
    pixel_mm = 1.0 if pixel is None else pixel[1]
    grid = plan_grid(model.card, truth.shape[-2:], pixel, resample)
    if task == "ct" and grid["resampled"]:
        n = grid["shape"][1]
        grid.update(shape=[n, n], pixel_mm=[pixel_mm * truth.shape[-1] / n] * 2)
    params: dict[str, Any] = {"input": str(store), "slices": slices, "data": holdout["data"], "holdout": holdout,
                              "checkpoint": checkpoint, "weights_sha256": model.card["weights"]["sha256"], "nfe": nfe,
                              "seed": seed, "crop": crop, "downsample": downsample,
                              "image_shape": list(truth.shape[-2:]), "pixel_size_mm": pixel_mm,
                              "pixel_spacing_mm": None if pixel is None else list(pixel), "grid": grid,
                              "noise": "none (noise-free simulated measurements)", "hardware": describe(device)}
    if pixel is None:
        params["pixel_size_note"] = "the input has no pixel spacing: 1 mm assumed, no resampling"
    if screen.active:
        params["nonfinite"] = screen.record("the filled slices are the ground truth: the measurement is simulated "
                                            "from them and the metrics include the filled voxels")
    methods: dict[str, dict[str, Any]] = {}
    classical: dict[str, tuple[Any, float]] = {}  # name -> (physical image, seconds): warm-start initialisers
    shown: dict[str, tuple[Any, Any]] = {}  # diffusion name -> (image, std): the --images pictures
    say = log or (lambda msg: None)

    if task == "mri":
        from scorerecon.pipelines.tasks import reconstruct
        from scorerecon.pipelines.tasks.mri import (
            MRI_BASELINES,
            mask_info,
            mri_baselines,
            mri_problem,
            phase_encode_mask,
            simulate_singlecoil,
        )

        if mask not in MASK_KINDS:
            raise InputError(None, f"--mask must be one of {list(MASK_KINDS)}, got {mask!r}")
        if not accel > 1:
            raise InputError(None, f"--accel must be > 1, got {accel}")
        h, w = truth.shape[-2:]
        try:
            kmask = phase_encode_mask(mask, (h, w), accel, seed=seed)
        except ValueError as exc:
            raise InputError(None, f"cannot build a {mask} mask at R={accel} for {h}x{w}: {exc}") from None
        params.update(mask=mask_info(mask, accel, kmask, seed), accel=accel, coils=int(coils))
        reference = torch.from_numpy(truth)
        if coils > 1:
            kspace, maps, params["coil_simulation"] = _simulate_multicoil(truth, kmask, int(coils), coil_maps, seed)
        else:
            kspace, maps = simulate_singlecoil(reference, kmask), None
        baselines = list(MRI_BASELINES) if baselines is None else baselines
        for name, (img, secs) in mri_baselines(kspace, kmask, maps, tuple(baselines)).items():
            classical[name] = (img, secs)
            methods[name] = _entry("classical", image_metrics(truth, img.abs()), 0, secs)
            say(f"{name}: {methods[name]['psnr']:.2f} dB")
        # multi-coil images carry the simulated phase: reconstruct real and imaginary parts as two
        # images (score-MRI) rather than give the real-image model an oracle phase the CS baselines lack
        problem = mri_problem(kspace, kmask, model.card["data"]["normalization"], maps,
                              complex_mode="real" if coils == 1 else "channels", phase=None,
                              grid=tuple(grid["shape"]) if grid["resampled"] else None, noise=0.0)
        params["complex_handling"] = problem.info  # noise 0: k-space simulated noise-free from the reference
    else:
        from scorerecon.pipelines.tasks import reconstruct
        from scorerecon.pipelines.tasks.ct import CT_BASELINES, ct_baselines, ct_geometry, ct_problem, simulate_sinogram

        try:
            geometry = ct_geometry(truth.shape[-1], views, arc)
        except ValueError as exc:
            raise InputError(None, f"CT geometry: {exc} (--views N or --arc DEG)") from None
        params.update(geometry=geometry.config(), views=views, arc=arc)
        sino = simulate_sinogram(torch.from_numpy(truth), geometry, pixel_mm)
        baselines = list(CT_BASELINES) if baselines is None else baselines
        for name, (img, secs) in ct_baselines(sino, geometry, pixel_mm, tuple(baselines)).items():
            classical[name] = (img, secs)
            methods[name] = _entry("classical", ct_metrics(truth, img[:, 0].numpy()), 0, secs)
            say(f"{name}: {methods[name]['psnr']:.2f} dB")
        problem = ct_problem(sino, geometry, pixel_mm, model.card["data"]["normalization"],
                             grid=grid["shape"][0] if grid["resampled"] else None)
    problem.slice_ids = [int(z) for z in slices]  # each slice's noise stream named by its index: batch-independent

    if int(samples) < 1:
        raise InputError(None, f"--samples must be >= 1, got {samples}")
    params["samples"] = int(samples)
    from scorerecon.pipelines.tasks import TV_XY, TV_XY_SOLVERS, WARM_START, WARM_T0

    warm_start = WARM_START[task] if warm_start == "default" else warm_start
    t0 = WARM_T0 if t0 is None else float(t0)
    warm = {} if warm_start in (None, "none") else {"warm_start": warm_start, "t0": t0}
    tv_xy = TV_XY[task] if tv_xy == "default" else float(tv_xy)
    if tv_xy < 0:
        raise InputError(None, f"--tv-xy must be >= 0, got {tv_xy}")

    def with_tv(solver: str, settings: dict[str, Any]) -> dict[str, Any]:
        return {"tv_xy": tv_xy, **settings} if tv_xy > 0 and solver in TV_XY_SOLVERS else settings

    params["warm_start"] = warm or None
    params["tv_xy"] = tv_xy
    params["solver_settings"] = {s: {**problem.spec(s), **with_tv(s, warm)} for s in solvers}
    runs = [(s, s, nfe, int(samples), with_tv(s, dict(warm))) for s in solvers]
    for name, variant in (variants or {}).items():
        settings = with_tv(variant["solver"], {**warm, **dict(variant)})
        base, budget = settings.pop("solver"), int(settings.pop("nfe", nfe))
        draws = int(settings.pop("samples", samples))
        runs.append((name, base, budget, draws, settings))
        extra = {k: settings[k] for k in ("tv_z", "admm", "warm_start", "t0") if k in settings}
        step = {k: v for k, v in settings.items() if k not in extra}
        params["solver_settings"][name] = {**problem.spec(base, **step), "solver": base, "nfe": budget,
                                           "samples": draws, **extra}
    for solver, base, budget, draws, settings in runs:
        run = reconstruct
        settings, init_secs, init = dict(settings), 0.0, {}
        if "tv_z" in settings:
            from scorerecon.pipelines.tasks.volume import reconstruct_volume as run
        source, start_t = settings.pop("warm_start", None), settings.pop("t0", None)
        if source not in (None, "none"):
            init_image, init_secs = _initialiser(source, classical, task, kspace if task == "mri" else sino,
                                                 kmask if task == "mri" else geometry, maps if task == "mri" else None,
                                                 pixel_mm)
            init = {"init": init_image, "t_start": float(start_t if start_t is not None else t0)}
        with torch.no_grad():
            rec = run(problem, model, base, nfe=budget, seed=seed, n_samples=draws, device=device, engine=engine,
                      **init, **settings)
        est = rec.image.detach().cpu()
        if keep_images:
            shown[solver] = (est if task == "mri" else est[:, 0], rec.std)
        metrics = image_metrics(truth, est.abs()) if task == "mri" else ct_metrics(truth, est[:, 0].numpy())
        residual = float(problem.residual(rec.model_state.cpu()).mean())
        extra = {"warm_start": source, "t0": init["t_start"]} if init else {}
        methods[solver] = _entry("diffusion", metrics, rec.nfe * draws, rec.seconds + init_secs,
                                 relative_data_residual=round(residual, 6), samples=draws, **extra)
        say(f"{solver}: {methods[solver]['psnr']:.2f} dB, {rec.nfe} NFE, {rec.seconds:.1f} s")
    result = {"task": task, "convention": CONVENTIONS[task], "data": holdout["data"], "params": params,
              "slices": slices, "methods": methods}
    if keep_images:
        from scorerecon.pipelines.panels import medical_panels

        result["_panels"] = medical_panels(task, truth, slices, classical, shown, methods, data=holdout["data"],
                                           measurement=kmask if task == "mri" else sino)
    return result


def _initialiser(name: str, classical: dict[str, tuple[Any, float]], task: str, measurement: Any, setting: Any,
                 maps: Any, pixel_mm: float) -> tuple[Any, float]:
    """The warm start's initial image (physical units, the input's grid) and its seconds: a baseline's
    result, computed now if the run did not report that baseline."""
    if name not in classical:
        from scorerecon.pipelines.tasks import ct, mri

        known = mri.MRI_BASELINES if task == "mri" else ct.CT_BASELINES
        if name not in known:
            raise InputError(None, f"--warm-start {name!r}: not a {task} baseline; choose from {list(known)}")
        if task == "mri":
            classical[name] = mri.mri_baselines(measurement, setting, maps, (name,))[name]
        else:
            classical[name] = ct.ct_baselines(measurement, setting, pixel_mm, (name,))[name]
    return classical[name]


def _check_tv_xy_has_a_solver(tv_xy: float | str, solvers: list[str],
                              variants: dict[str, dict[str, Any]] | None) -> None:
    """Refuse an explicit in-plane TV weight that no solver of this run would use (it would be dropped silently)."""
    from scorerecon.pipelines.tasks import TV_XY_SOLVERS

    if tv_xy == "default" or float(tv_xy) <= 0:
        return
    run_solvers = set(solvers) | {v["solver"] for v in (variants or {}).values()}
    if not run_solvers & set(TV_XY_SOLVERS):
        raise InputError(None, f"--tv-xy acts in the data step of solver {'/'.join(TV_XY_SOLVERS)}, which this run "
                               f"does not use (solvers: {', '.join(sorted(run_solvers))}): drop --tv-xy or add dds")


def mean_variants(samples: int, solvers: tuple[str, ...] = ("dc", "projection", "dds", "prox"),
                  ) -> dict[str, dict[str, Any]]:
    """``evaluate`` variants ``<solver>_mean<N>``: the mean of ``samples`` posterior samples of each solver.

    The default is every data-consistent solver; DPS is left out because its guidance gradient
    doubles the cost of each sample and its step is not data-consistent.
    """
    return {f"{s}_mean{int(samples)}": {"solver": s, "samples": int(samples)} for s in solvers} if samples > 1 else {}


# Metrics where smaller is better; every other metric column is "higher is better".
LOWER_IS_BETTER = frozenset({"nmse", "sam", "ergas", "mae", "mae_inside", "mae_outside", "sam_inside",
                             "sam_outside", "d_lambda", "d_s", "rmse"})
_NOT_METRICS = ("family", "nfe", "seconds", "data_range", "samples", "t0")


def best_per_family(methods: dict[str, dict[str, Any]], primary: str | None) -> dict[str, str]:
    """``{family: name}`` of the best method of each family on ``primary`` (direction-aware)."""
    sign = -1.0 if primary in LOWER_IS_BETTER else 1.0
    best = {}
    for fam in ("classical", "diffusion"):
        scored = {k: v for k, v in methods.items() if v.get("family") == fam and primary in v}
        if scored:
            best[fam] = max(scored, key=lambda k: sign * scored[k][primary])
    return best


def markdown_table(result: dict[str, Any], primary: str | None = None) -> str:
    """The methods of an evaluate result as a markdown table.

    Columns are the numeric metrics the methods report (in the order the first method lists
    them), then NFE and seconds; the best method of each family on ``primary`` (default: PSNR
    if reported, else the first metric) is marked with ``*``.
    """
    methods = result["methods"]
    columns: list[str] = []
    for m in methods.values():
        for key, value in m.items():
            if key not in _NOT_METRICS and key not in columns and isinstance(value, (int, float)) \
                    and not isinstance(value, bool):
                columns.append(key)
    primary = primary or ("psnr" if "psnr" in columns else (columns[0] if columns else None))
    best = best_per_family(methods, primary)

    def cell(value: Any, key: str) -> str:
        if not isinstance(value, (int, float)):
            return "–"
        if key in ("psnr", "sam", "ergas") or key.startswith(("psnr", "sam")):
            return f"{value:.2f}"
        return f"{value:.4f}"

    header = "| method | family | " + " | ".join(columns) + " | NFE | seconds |"
    lines = [header, "|" + "---|" * (len(columns) + 4)]
    if result.get("data"):  # medical evaluations say whose data the rows are on
        lines = [f"Data: {result['data']}", "", *lines]
    for name, m in methods.items():
        mark = " *" if best.get(m.get("family")) == name else ""
        cells = " | ".join(cell(m.get(c), c) for c in columns)
        lines.append(f"| {name}{mark} | {m.get('family', '')} | {cells} | {m.get('nfe', 0)} | "
                     f"{m.get('seconds', 0.0):.1f} |")
    return "\n".join(lines)


def family_summary(result: dict[str, Any], primary: str = "psnr") -> str:
    """One line: the best diffusion method against the best classical one (by ``primary``)."""
    methods = result["methods"]
    best = best_per_family(methods, primary)
    if len(best) < 2:
        return ""
    c, d = methods[best["classical"]], methods[best["diffusion"]]
    text = (f"best diffusion {best['diffusion']} {primary} {d[primary]:.4g} vs best classical {best['classical']} "
            f"{c[primary]:.4g} ({d[primary] - c[primary]:+.3g})")
    if primary == "psnr" and "ssim" in c and "ssim" in d:
        text += f"; SSIM {d['ssim']:.4f} vs {c['ssim']:.4f} ({d['ssim'] - c['ssim']:+.4f})"
    return text


def few_vs_many_lines(result: dict[str, Any], reference: str) -> list[str]:
    """For each other diffusion method, its PSNR difference to the ``reference`` run (e.g. PC-1000)."""
    methods = result["methods"]
    ref = methods[reference]
    return [f"- {name} at {m['nfe']} NFE: {m['psnr'] - ref['psnr']:+.2f} dB vs {reference} at {ref['nfe']} NFE"
            for name, m in methods.items() if m["family"] == "diffusion" and name != reference]


def _csv(text: str | None) -> list[str] | None:
    if text is None:
        return None
    return [t.strip() for t in text.split(",") if t.strip()]


def evaluate_from_args(args: argparse.Namespace, log: Any) -> dict[str, Any]:
    """The ``scorerecon evaluate`` entry point for ``--task mri|ct`` (every task's module has one; the registry
    names it, :attr:`~scorerecon.pipelines.tasks.registry.Task.evaluate`)."""
    if args.input is None or len(args.input) != 1:
        raise InputError(None, f"--task {args.task} needs exactly one --input image store")
    if args.slices is None:
        raise InputError(args.input[0], f"--task {args.task} needs --slices (held-out slice indices)")
    if args.task == "ct" and (args.views is None) == (args.arc is None):
        raise InputError(None, "--task ct needs exactly one of --views N (sparse view) or --arc DEG (limited angle)")
    return evaluate(args.task, args.input[0], parse_slices(args.slices), checkpoint=args.checkpoint,
                    accel=args.accel, mask=args.mask or "random", views=args.views, arc=args.arc, nfe=args.nfe,
                    seed=args.seed, solvers=_csv(args.solvers), baselines=_csv(args.baselines), crop=args.crop,
                    downsample=args.downsample, device=args.device, log=log, coils=args.coils,
                    coil_maps=args.coil_maps, samples=args.samples or 1, warm_start=args.warm_start, t0=args.t0,
                    resample=not args.no_resample, keep_images=getattr(args, "images", None) is not None,
                    nonfinite=args.nonfinite, engine=engine_config(args),
                    tv_xy="default" if args.tv_xy is None else args.tv_xy)


def _run(args: argparse.Namespace) -> int:
    import torch

    from scorerecon.models.checkpoint import atomic_write_json

    refuse_foreign_options(args.task, given_options(args))
    engine_config(args)  # a precision the device lacks is refused before any input is read
    if args.threads:
        torch.set_num_threads(args.threads)
    log = None if args.quiet else (lambda msg: print(f"  {msg}", flush=True))
    start = time.perf_counter()
    result = resolve(get_task(args.task).evaluate + ":evaluate_from_args")(args, log)  # the task's module
    primary = result.pop("_primary", None)  # the metric that ranks methods in the table (e.g. "ergas")
    panels = result.pop("_panels", None)  # the middle slice / image of every method (--images)
    result["params"]["wall_seconds"] = round(time.perf_counter() - start, 2)
    if args.json:
        atomic_write_json(Path(args.json), result)
    if args.images:
        if panels is None:
            print(f"note: --task {args.task} keeps no pictures; {args.images} not written")
        else:
            panels.save(args.images)
    print(markdown_table(result, primary=primary))
    if result.get("note"):  # e.g. a classical fallback where the prior cannot serve the input
        print(f"note: {result['note']}")
    from scorerecon.pipelines.hardware import one_line

    print(f"\n{result['convention']}\n{one_line(args.device)}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("evaluate",
                                   help="baselines vs. diffusion solvers on held-out real data -> JSON + table",
                                   description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", choices=tuple(TASKS), required=True, help="what to evaluate (docs/tasks.md)")
    parser.add_argument("--input", type=Path, nargs="+", default=None,
                        help="mri/ct: the image store with the ground-truth volume; natural tasks: image files")
    parser.add_argument("--slices", default=None, help="mri/ct held-out slice indices: 85,95 or 80:100[:step]")
    parser.add_argument("--checkpoint", default=None, help="prior (default: the task's checkpoint in checkpoints/)")
    parser.add_argument("--accel", "--acceleration", dest="accel", type=float, default=4.0,
                        help="MRI acceleration R (default 4)")
    parser.add_argument("--mask", default=None,
                        help="MRI: random | equispaced | poisson; inpaint: box | random | strokes; cloud: a mask file")
    parser.add_argument("--coils", type=int_range(1, 64), default=1,
                        help="MRI: simulate this many receive coils (birdcage maps + smooth phase; default 1)")
    parser.add_argument("--coil-maps", default="true",
                        help="MRI multi-coil: true (the simulation's maps) | espirit (from the ACS block)")
    parser.add_argument("--views", type=int_range(1, 100_000), default=None,
                        help="CT sparse view: number of views over [0, 180)")
    parser.add_argument("--arc", type=float_range(0, 360, lo_open=True), default=None,
                        help="CT limited angle: arc in degrees (1 view/degree)")
    parser.add_argument("--nfe", type=int_range(1, 100_000), default=None,
                        help="network evaluations per diffusion solver (default: 50 medical, the task's default "
                        "otherwise)")
    parser.add_argument("--seed", type=int, default=0, help="mask, degradation and sampler seed")
    parser.add_argument("--solvers", default=None,
                        help="comma list of diffusion solvers (default: the task's, opt-in dds_tta aside)")
    parser.add_argument("--baselines", default=None, help="comma list of classical baselines (default: all)")
    parser.add_argument("--crop", type=int_range(1, 4096), default=None,
                        help="centre-crop to N x N (after --downsample)")
    parser.add_argument("--warm-start", default="default",
                        help="mri/ct: start every solver at --t0 from this baseline's result (tv, l1_wavelet, "
                        "zero_filled; fbp, sart; default: none = from noise, see pipelines.tasks.WARM_START)")
    parser.add_argument("--t0", type=float, default=None, help="warm start: diffusion time to start at (default 0.1)")
    parser.add_argument("--tv-xy", type=float, default=None,
                        help="mri/ct: in-plane TV weight in the dds data step (default: pipelines.tasks.TV_XY; "
                        "0 = the plain DDS step)")
    parser.add_argument("--no-resample", action="store_true",
                        help="mri/ct: keep the solvers on the input grid even when its pixel differs >15%% from "
                        "the prior's")
    parser.add_argument("--downsample", type=int_range(1, 64), default=1,
                        help="MRI/CT: average F x F pixel blocks first")
    from scorerecon.pipelines.nonfinite import add_argument as add_nonfinite

    add_nonfinite(parser)
    # natural images
    parser.add_argument("--scale", type=int, default=4, help="sr: downsampling factor (2 or 4)")
    parser.add_argument("--sigma", type=float, default=25.0, help="denoise: noise sigma on the 0..255 scale")
    parser.add_argument("--kernel", default="gaussian", help="deblur: gaussian | motion")
    # remote sensing
    parser.add_argument("--ms", type=Path, nargs="+", default=None, help="pansharpen: multispectral band files")
    parser.add_argument("--pan", type=Path, default=None, help="pansharpen: panchromatic file (else synthesised)")
    parser.add_argument("--ratio", type=int, default=None, help="pansharpen: PAN/MS resolution ratio")
    parser.add_argument("--clear", type=Path, default=None, help="cloud: clear reference (GeoTIFF/JP2 or .npy)")
    parser.add_argument("--cloudy", type=Path, default=None, help="cloud: cloudy input (GeoTIFF/JP2 or .npy)")
    parser.add_argument("--samples", type=int_range(1, 1000), default=None,
                        help="posterior samples averaged (mri, ct: each solver's output is the mean of N samples, "
                        "N x NFE; pansharpen, cloud: also their std; natural tasks)")
    parser.add_argument("--device", type=device, default="auto", help=DEVICE_HELP)
    parser.add_argument("--threads", type=int_range(1, 1024), default=None, help="torch CPU threads")
    add_engine_arguments(parser)
    parser.add_argument("--json", type=output_file(), default=None, help="write the result JSON here (atomically)")
    parser.add_argument("--images", type=output_file(".npz"), default=None,
                        help="write the pictures `scorerecon report` shows (middle slice of every method, input, "
                        "reference, posterior std; float16 .npz) here")
    parser.add_argument("--quiet", action="store_true")
    parser.set_defaults(func=_run)
    remember_defaults(parser)  # another task's option given is refused (the registry's Task.options)
