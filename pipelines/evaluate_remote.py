"""``scorerecon evaluate --task pansharpen|cloud``: classical baselines vs. the conditional diffusion models.

Pan-sharpening (``--ms FILE... [--pan FILE] --ratio 2``): reduced-resolution evaluation by Wald's
protocol (:mod:`scorerecon.modalities.optical.degradation`): the given MS is the reference, its
MTF-degraded version (decimated by the ratio) and the degraded pan are the inputs; every method
sharpens them back and is scored by Q2n, SAM (degrees), ERGAS and SCC. With a real pan the
methods also run at full resolution on the original pair and are scored without reference
(QNR, D_lambda, D_s). Without ``--pan`` a pan is synthesised from the MS bands
(:func:`~scorerecon.modalities.optical.bands.pan_weights`), at the MS resolution, i.e. directly
as the reduced-scale pan (then no full-resolution scores). Inputs: single-band GeoTIFF/JP2 files
(band names from file names, ``l8_B4.tif`` -> ``B04``) or one ``.npy`` ``(time, y, x, band)``
(first date). Held-out area: when the MS files are on the model's training grid (same CRS and
transform; or a ``.npy`` of the training shape) only the card's held-out columns are evaluated;
an input elsewhere is unseen as a whole. The model sharpens the card's bands (B01-B07). Its
output is the mean of ``--samples`` (default 5) DDIM samples of ``--nfe`` (default 2) steps each,
10 network evaluations in all (the JSON's ``nfe`` is that total); the 2 x 5 split was chosen on a
training strip of the scene, never on held-out pixels.

Any other band set (another sensor, a subset, any count) whose wavelengths are known -- from the file names:
``LE07_...`` / ``L7_...`` Landsat-7 ETM+ (a 6-band stack without descriptions is B1-B5, B7), ``LT05``
Landsat-5 TM, ``l8_`` / ``LC08`` Landsat-8, ``s2_`` Sentinel-2
(:func:`~scorerecon.modalities.optical.anyband.infer_bands`) -- at ratio 2 is sharpened band by band by the
any-band prior (``checkpoints/anyband_pansharpen``,
:mod:`scorerecon.modalities.optical.anyband`; ``params.prior = "anyband"``, one ``note`` line), with its own
default sampling (``reconstruct_remote.ANYBAND_SAMPLING``); on one of its training scenes' grids only that
scene's held-out columns are scored. Where neither prior serves (unknown wavelengths, another ratio) the
classical methods alone are scored, with a one-line ``note: classical fallback: ...`` saying why.

Sentinel-2 20 m -> 10 m super-resolution (``--task s2sr --ms FILE...``: the six 20 m bands B05,
B06, B07, B8A, B11, B12 and the four 10 m bands B02, B03, B04, B08, one file each, names from the
file names): Wald reduced resolution on block-aligned grids
(:mod:`scorerecon.modalities.optical.s2_superres`): 20 m -> 40 m input, 10 m -> 20 m guide, the
original 20 m bands the reference; held out as for pan-sharpening (the card's columns when the
20 m files are on the training grid), restricted to 20 m pixels whose 10 m block the guide
covers, cut to even sizes. Classical: bicubic, band-wise GSA and MTF-GLP; the model's output
is the mean of ``--samples`` (default 4) DDIM samples of ``--nfe`` (default 5) steps, the split
chosen on a training strip of the scene (``benchmarks/s2_superres.py --tune``).

Cloud removal (``--clear FILE --cloudy FILE [--mask FILE] [--samples N]``): ``.npy`` stacks
``(time, y, x, band)`` of clear dates and their paired cloudy versions (e.g. made by
:mod:`scorerecon.modalities.optical.clouds` from real cloud shapes: ``benchmarks/cloud.py``
writes them), masks ``(time, y, x[, 1])`` (without ``--mask``: the multi-temporal blue test).
Each date is restored with the *adjacent* date of the clear stack as the "other clear date"
(``evaluate_cloud(other_dates=...)`` picks others: ``benchmarks/cloud.py`` pairs dates weeks
apart). When a clear date is one of the model's training dates (recognised by its fingerprint),
only the card's held-out columns are evaluated. Baselines: nearest clear date (plain and
radiometrically matched) and biharmonic inpainting; the diffusion model draws ``--samples``
posterior samples (default 8) and is scored on their mean composited with the input (outside
the mask the input itself: ``outside_equal`` checks it); ``coverage90`` is the fraction of masked
reference values inside the split-conformal 90 % interval fitted on the training area
(:func:`calibrate_cloud`), ``coverage90_raw`` inside mean +- 1.645 std.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

from scorerecon.pipelines.errors import InputError
from scorerecon.pipelines.options import engine_config
from scorerecon.pipelines.reconstruct_remote import DEFAULT_SAMPLING
from scorerecon.pipelines.tasks.registry import TASKS

#: the metric conventions (views of the task registry, pipelines/tasks/registry.py)
CONVENTIONS = {t: TASKS[t].convention for t in ("pansharpen", "s2sr", "cloud")}


def _entry(family: str, metrics: dict[str, float], nfe: int, seconds: float, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"family": family}
    out.update({k: (round(float(v), 6) if np.isfinite(v) else None) for k, v in metrics.items()})
    out.update(nfe=int(nfe), seconds=round(float(seconds), 3), **extra)
    return out


# ------------------------------------------------------------------------------------------------
# inputs
# ------------------------------------------------------------------------------------------------
def _read_npy_scene(path: Path) -> np.ndarray:
    from scorerecon.modalities.optical.clouds import load_stack

    return np.moveaxis(load_stack(path)[0], -1, 0).astype(np.float64)


def _read_rasters(paths: list[Path]) -> tuple[np.ndarray, list[str], dict[str, Any]]:
    """Band files -> ``(C, H, W)``, one name per band, the grid.

    A single-band file is named from its file name (``l8_B4.tif`` -> ``B04``); the bands of a
    multi-band file by their descriptions, else ``STEM_1 ... STEM_k``.
    """
    import rasterio

    from scorerecon.modalities.io.geotiff import band_name_from_path
    from scorerecon.modalities.optical.datasets import read_bands

    for p in paths:
        if not p.exists():
            raise InputError(p, "file not found")
    data, grid = read_bands(paths)
    names: list[str] = []
    for p in paths:
        with rasterio.open(p) as src:
            count, descriptions = src.count, src.descriptions
        if count == 1:
            names.append(band_name_from_path(p) or p.stem)
        else:
            names += [d or f"{p.stem}_{i + 1}" for i, d in enumerate(descriptions)]
    return data, names, grid


def _load_ms(paths: list[Path], bands: list[str]) -> tuple[np.ndarray, list[str], dict[str, Any] | None]:
    """Every MS band given (``.npy`` bands take the model's names when their count matches)."""
    if len(paths) == 1 and paths[0].suffix.lower() == ".npy":
        ms = _read_npy_scene(paths[0])
        names = list(bands) if ms.shape[0] == len(bands) else [f"band{i + 1}" for i in range(ms.shape[0])]
        return ms, names, None
    if any(p.suffix.lower() == ".npy" for p in paths):
        raise InputError(paths[0], "pass either one .npy (time, y, x, band) or GeoTIFF/JP2 band files")
    return _read_rasters(paths)


def _holdout_columns(card: dict[str, Any], grid: dict[str, Any] | None, shape: tuple[int, int]
                     ) -> tuple[slice, str]:
    """Columns to evaluate and why: the card's held-out range on the training grid, else all."""
    data = card["data"]
    x0, x1 = data["holdout"]["x"]
    train = data.get("grid", {})
    if grid is None:  # a .npy: the training scene when it has the training shape
        same = list(shape) == list(train.get("shape", []))
    else:
        same = (grid.get("crs") == train.get("crs") and list(shape) == train.get("shape")
                and np.allclose(grid.get("transform", []), train.get("transform", [])))
    if same:
        return slice(int(x0), int(x1)), f"training scene: held-out columns [{x0}, {x1}) only"
    if grid is not None and grid.get("crs") == train.get("crs") and train.get("transform"):
        # same CRS, other grid: refuse any overlap with the training columns' footprint
        a, _, c, _, e, f = train["transform"]
        tc0, tc1 = data["train_columns"]
        tx0, tx1 = c + a * tc0, c + a * tc1
        ty1, ty0 = f, f + e * train["shape"][0]
        ga, _, gc, _, ge, gf = grid["transform"]
        gx0, gx1 = gc, gc + ga * shape[1]
        gy1, gy0 = gf, gf + ge * shape[0]
        if gx0 < tx1 and gx1 > tx0 and gy0 < ty1 and gy1 > ty0:
            raise InputError(None, "the MS input overlaps the model's training area but is not on its grid; "
                                   "crop it to the held-out area")
    return slice(0, shape[1]), "input outside the training scene: all of it is unseen"


# ------------------------------------------------------------------------------------------------
# pan-sharpening
# ------------------------------------------------------------------------------------------------
def evaluate_pansharpen(ms_paths: list[Path], pan_path: Path | None, ratio: int, *, checkpoint: str | None = None,
                        nfe: int | None = None, samples: int | None = None, seed: int = 0,
                        baselines: list[str] | None = None, crop: int | None = None, full_resolution: bool = True,
                        device: str = "cpu", log: Any = None, engine: Any = None) -> dict[str, Any]:
    """Baselines and the diffusion model on the held-out area; the result dict of ``evaluate``.

    The Landsat-8 prior serves exactly its bands; any other band set with known wavelengths at ratio 2 goes to the
    any-band prior (``checkpoint`` may also name it directly); otherwise the classical methods alone, with a note.
    ``nfe`` / ``samples`` default to the serving prior's own defaults.
    """
    import torch

    from scorerecon.modalities.optical.anyband import infer_bands, pan_range
    from scorerecon.modalities.optical.bands import LANDSAT8, MTF_MS, PAN_RANGE_NM, band_specs, pan_weights
    from scorerecon.modalities.optical.baselines import PANSHARPEN_BASELINES, run_pansharpen_baselines
    from scorerecon.modalities.optical.degradation import grid_phase, synthesize_pan, wald_degrade
    from scorerecon.modalities.optical.metrics import pansharpen_reduced, qnr
    from scorerecon.pipelines.hardware import describe
    from scorerecon.pipelines.reconstruct_remote import (
        ANYBAND_ADAPTATION,
        ANYBAND_CHECKPOINT,
        ANYBAND_SAMPLING,
        PANSHARPEN_CONSISTENCY,
        align_pan,
        anyband_reason,
        anyband_scene,
        is_anyband,
        load_anyband,
        load_task_model,
        pansharpen_fallback_reason,
        pansharpen_scene,
    )

    say = log or (lambda msg: None)
    model, checkpoint = load_task_model("pansharpen", checkpoint, device)
    card = model.card
    baselines = list(PANSHARPEN_BASELINES) if baselines is None else baselines
    unknown = [b for b in baselines if b not in PANSHARPEN_BASELINES]
    if unknown:
        raise InputError(None, f"unknown baseline(s) {unknown}; choose from {list(PANSHARPEN_BASELINES)}")
    if ratio < 2:
        raise InputError(None, f"--ratio must be an integer >= 2, got {ratio}")
    ms, names, grid = _load_ms(ms_paths, list(card["data"]["bands"]) if not is_anyband(card["data"]) else [])
    stems = [p.stem for p in ms_paths]
    if is_anyband(card["data"]):
        reason = "the checkpoint is the any-band prior"
    else:
        reason = pansharpen_fallback_reason(names, ratio, card["data"])
    note, mode, specs, any_specs = None, "landsat8", None, None
    if reason is None:  # the prior's own bands, in its order
        bands = list(card["data"]["bands"])
        ms = ms[[names.index(b) for b in bands]]
        specs = band_specs(bands, "landsat8")
        gains = [b.mtf_nyquist for b in specs]
        cols, held = _holdout_columns(card, grid, ms.shape[-2:])
    else:
        bands = names
        any_specs = infer_bands(names, stems)
        anyband = (model, checkpoint) if is_anyband(card["data"]) else load_anyband(None, device)
        why = anyband_reason(any_specs, names, ratio, None if anyband is None else anyband[0].card["data"])
        if why is None:
            mode, specs = "anyband", any_specs
            model, checkpoint = anyband
            card = model.card
            gains = [b.mtf_nyquist for b in specs]
            note_any = f"any-band prior: {reason}; {ANYBAND_CHECKPOINT} sharpens {', '.join(names)} band by band"
            say(note_any)
            cols, held = _anyband_holdout(card["data"], grid, ms.shape[-2:])
        else:
            mode = "classical"
            note = f"classical fallback: {reason}; {why}; scored the classical methods only (no diffusion)"
            say(note)
            specs = [b for b in any_specs] if all(any_specs) else None
            if specs is None:
                try:
                    specs = band_specs(bands)
                except KeyError:  # bands of an unknown sensor: the toolbox's generic MTF gain for every band
                    specs = None
            gains = [b.mtf_nyquist for b in specs] if specs else [MTF_MS] * len(bands)
            cols, held = slice(0, ms.shape[-1]), "classical methods only: all of the input"
    defaults = ANYBAND_SAMPLING if mode == "anyband" else (2, 5)
    nfe = defaults[0] if nfe is None else int(nfe)
    samples = defaults[1] if samples is None else int(samples)
    pan_gain = LANDSAT8["B08"].mtf_nyquist
    phase = ratio // 2
    ref = ms[:, :, cols]
    pan_full = None
    if pan_path is not None:
        if pan_path.suffix.lower() == ".npy":
            pan_full = _read_npy_scene(pan_path)[0]
        else:
            pan_data, _, pan_grid = _read_rasters([pan_path])
            pan_full = pan_data[0]
            if grid is not None:
                try:
                    phases = grid_phase(grid["transform"], pan_grid["transform"], ratio)
                except ValueError as exc:
                    raise InputError(pan_path, f"pan grid does not nest in the MS grid: {exc}") from None
                pan_full, phase, _ = align_pan(pan_full, phases, ratio, pan_path)  # one phase for both axes
        pan_full = pan_full[:, cols.start * ratio:cols.stop * ratio]
        h = min(ref.shape[1], (pan_full.shape[0] - phase) // ratio)
        w = min(ref.shape[2], (pan_full.shape[1] - phase) // ratio)
        if h < 32 or w < 32:
            raise InputError(pan_path, f"pan covers only {h}x{w} MS pixels of the held-out area (need >= 32x32)")
        ref, pan_full = ref[:, :h, :w], pan_full[:ratio * h, :ratio * w]
    if crop:
        ref = ref[:, :crop, :crop]
        pan_full = None if pan_full is None else pan_full[:ratio * crop, :ratio * crop]
    h, w = ref.shape[-2:]
    if h < 32 or w < 32:
        raise InputError(ms_paths[0], f"evaluation area {h}x{w} is smaller than one 32x32 Q2n block")
    ms_low = wald_degrade(ref, ratio, gains, phase)
    prange, prange_note = PAN_RANGE_NM, "synthetic pan (FWHM overlap with 500-680 nm)"
    if pan_full is not None:
        pan_low = wald_degrade(pan_full, ratio, pan_gain, phase)[:h, :w]
        pan_note = str(pan_path)
        prange, prange_note = pan_range(pan_path.stem, stems)
    elif mode == "landsat8":
        pan_low = synthesize_pan(ref, pan_weights(specs))
        lo, hi = np.percentile(pan_low, [1, 99])
        norm = card["data"]["normalization"]
        pan_low = (pan_low - lo) / (hi - lo) * (norm["pan_hi"] - norm["pan_lo"]) + norm["pan_lo"]
        pan_note = "synthesised from MS (FWHM overlap with 500-680 nm), 1/99 % mapped to the model's pan range"
    else:  # any-band prior (it z-scores the pan itself) or classical only; unknown wavelengths -> the band mean
        try:
            weights, pan_note = pan_weights(specs), "synthesised from MS (FWHM overlap with 500-680 nm)"
        except (TypeError, ValueError):
            if mode == "anyband":
                raise InputError(ms_paths[0], "no band overlaps the pan range 500-680 nm, so no pan can be "
                                              "synthesised for the any-band prior; pass --pan") from None
            weights = [1.0 / len(bands)] * len(bands)
            pan_note = "synthesised as the mean of the MS bands (their wavelengths are unknown)"
        pan_low = synthesize_pan(ref, weights)
    params: dict[str, Any] = {
        "ms": [str(p) for p in ms_paths], "pan": pan_note, "ratio": ratio, "phase": phase, "bands": bands,
        "mtf_gains": gains, "pan_mtf_gain": pan_gain, "holdout": held, "reference_shape": [h, w],
        "checkpoint": checkpoint, "weights_sha256": card["weights"]["sha256"], "nfe_per_sample": nfe,
        "samples": samples, "nfe_total": nfe * samples, "seed": seed,
        "sampler": f"ddim (eta 0), mean of {samples} samples", "hardware": describe(device), "prior": mode}
    if mode == "anyband":
        params.update(wavelengths_nm={n: list(b.range_nm) for n, b in zip(names, specs, strict=True)},
                      pan_range_nm=list(prange), pan_range_source=prange_note, note=note_any)
    if note is not None:
        params.update(fallback=note, checkpoint=None, weights_sha256=None, nfe_total=0, sampler=None)
    methods: dict[str, dict[str, Any]] = {}
    fused_all: dict[str, np.ndarray] = {}
    for name, (fused, secs) in run_pansharpen_baselines(ms_low, pan_low, ratio, phase, baselines, gains,
                                                        pan_gain).items():
        methods[name] = _entry("classical", pansharpen_reduced(ref, fused, ratio), 0, secs)
        fused_all[name] = fused
        say(f"{name}: ERGAS {methods[name]['ergas']:.3f}, SAM {methods[name]['sam']:.3f}")

    adapted: dict[str, Any] = {}

    def diffusion(ms_in: np.ndarray, pan_in: np.ndarray) -> tuple[np.ndarray, np.ndarray, Any]:
        with torch.no_grad():
            if mode == "anyband":
                return anyband_scene(model, card["data"], ms_in, pan_in, specs, ratio, phase, prange, gains, nfe=nfe,
                                     samples=samples, seed=seed, device=device, engine=engine,
                                     adaptation=ANYBAND_ADAPTATION, pan_gain=pan_gain, record=adapted)
            return pansharpen_scene(model, card["data"], ms_in, pan_in, nfe=nfe, samples=samples, seed=seed,
                                    device=device, phase=phase, engine=engine, gains=gains,
                                    consistency_steps=PANSHARPEN_CONSISTENCY)

    std = None
    if note is None:
        start = time.perf_counter()
        fused, std, run = diffusion(ms_low, pan_low)
        secs = time.perf_counter() - start
        methods["diffusion"] = _entry("diffusion", pansharpen_reduced(ref, fused, ratio), run.nfe * samples, secs)
        if "adaptation" in adapted:
            params["adaptation"] = adapted["adaptation"]
        fused_all["diffusion"] = fused
        say(f"diffusion: ERGAS {methods['diffusion']['ergas']:.3f}, SAM {methods['diffusion']['sam']:.3f}, "
            f"{run.nfe} NFE, {secs:.1f} s")
    if full_resolution and pan_full is not None:
        pan_lr = wald_degrade(pan_full, ratio, pan_gain, phase)[:h, :w]
        for name, (out, _) in run_pansharpen_baselines(ref, pan_full, ratio, phase, baselines, gains,
                                                       pan_gain).items():
            methods[name].update({k: round(v, 6) for k, v in qnr(out, ref, pan_full, pan_lr).items()})
        if note is None:
            out, _, _ = diffusion(ref, pan_full)
            methods["diffusion"].update({k: round(v, 6) for k, v in qnr(out, ref, pan_full, pan_lr).items()})
    result = {"task": "pansharpen", "convention": CONVENTIONS["pansharpen"], "params": params,
              "methods": methods, "_primary": "ergas"}
    if note is not None:
        best = min(methods, key=lambda k: methods[k]["ergas"])
        result["note"] = f"{note}; best by ERGAS: {best}"
    elif mode == "anyband":
        result["note"] = note_any
    result["_arrays"] = {"reference": ref, "ms_low": ms_low, "pan_low": pan_low, "fused": fused_all, "std": std}
    return result


def _anyband_holdout(card_data: dict[str, Any], grid: dict[str, Any] | None, shape: tuple[int, int]
                     ) -> tuple[slice, str]:
    """Columns the any-band prior may be scored on: a training source's held-out columns when the input is on that
    source's grid (``InputError`` when it overlaps a training area off its grid), else all of it."""
    for source in card_data.get("sources", []):
        cols, why = _holdout_columns({"data": source}, grid, shape)
        if cols != slice(0, shape[1]) or why.startswith("training scene"):
            return cols, f"{source['sensor']} {why}"
    if grid is None:
        return slice(0, shape[1]), "a .npy input: treated as unseen (the any-band prior's sources are rasters)"
    return slice(0, shape[1]), "input outside the any-band prior's training scenes: all of it is unseen"


# ------------------------------------------------------------------------------------------------
# Sentinel-2 20 m -> 10 m super-resolution
# ------------------------------------------------------------------------------------------------
def _split_s2(paths: list[Path], bands: list[str], guide_bands: list[str]
              ) -> tuple[np.ndarray, dict[str, Any], np.ndarray, dict[str, Any]]:
    """Band files -> (20 m bands, their grid, 10 m guide bands, their grid), in the model's band order."""
    from scorerecon.modalities.io.geotiff import band_name_from_path

    named: dict[str, Path] = {}
    for p in paths:
        if not p.exists():
            raise InputError(p, "file not found")
        named[band_name_from_path(p) or p.stem] = p
    missing = [b for b in [*bands, *guide_bands] if b not in named]
    if missing:
        raise InputError(paths[0], f"--task s2sr needs one file per band {', '.join([*bands, *guide_bands])} "
                                   f"(named like s2_B8A.jp2); missing {', '.join(missing)}")
    ms, _, grid = _read_rasters([named[b] for b in bands])
    guide, _, guide_grid = _read_rasters([named[b] for b in guide_bands])
    return ms, grid, guide, guide_grid


def evaluate_s2sr(paths: list[Path], *, checkpoint: str | None = None, nfe: int = 5, samples: int = 4, seed: int = 0,
                  baselines: list[str] | None = None, crop: int | None = None, device: str = "cpu", log: Any = None,
                  engine: Any = None, columns: tuple[int, int] | None = None) -> dict[str, Any]:
    """Classical sharpening and the diffusion model on the held-out area (Wald); the result dict of ``evaluate``.

    ``columns`` (20 m, ``[start, stop)``) evaluates those columns of the input instead: the benchmark's
    tuning on the *training* area (``benchmarks/s2_superres.py --tune``).
    """
    import torch

    from scorerecon.modalities.optical import s2_superres as s2
    from scorerecon.modalities.optical.metrics import pansharpen_reduced
    from scorerecon.pipelines.hardware import describe
    from scorerecon.pipelines.reconstruct_remote import PANSHARPEN_CONSISTENCY, load_task_model, pansharpen_scene

    say = log or (lambda msg: None)
    model, checkpoint = load_task_model("s2sr", checkpoint, device)
    card = model.card
    data = card["data"]
    bands, guide_bands = list(data["bands"]), list(data["guide_bands"])
    ratio = int(data["ratio"])
    baselines = list(s2.S2SR_BASELINES) if baselines is None else baselines
    ms, grid, guide, guide_grid = _split_s2(paths, bands, guide_bands)
    try:
        (r0, r1), (c0, c1) = s2.covered_block(guide.shape, guide_grid["transform"], grid["transform"], ms.shape,
                                              ratio)
    except ValueError as exc:
        raise InputError(paths[0], f"the 10 m bands' grid does not nest in the 20 m grid: {exc}") from None
    aligned = s2.block_align(guide, guide_grid["transform"], grid["transform"], ms.shape[-2:], ratio)
    if columns is None:
        cols, held = _holdout_columns(card, grid, ms.shape[-2:])
    else:
        cols, held = slice(*columns), f"columns [{columns[0]}, {columns[1]}) as asked (tuning; not held out)"
    c0, c1 = max(c0, cols.start), min(c1, cols.stop)
    if crop:
        r1, c1 = min(r1, r0 + crop), min(c1, c0 + crop)
    r1 -= (r1 - r0) % ratio
    c1 -= (c1 - c0) % ratio
    if r1 - r0 < 32 or c1 - c0 < 32:
        raise InputError(paths[0], f"evaluation area {r1 - r0}x{c1 - c0} (20 m pixels) is smaller than one 32x32 "
                                   "Q2n block")
    ref = ms[:, r0:r1, c0:c1]
    guide_ref = aligned[:, ratio * r0:ratio * r1, ratio * c0:ratio * c1]
    ms_low, guide_low = s2.wald_pair(ref, guide_ref, bands, guide_bands, ratio)
    params: dict[str, Any] = {
        "ms": [str(p) for p in paths], "ratio": ratio, "phase": s2.PHASE, "bands": bands, "guide_bands": guide_bands,
        "mtf_gains": s2.mtf_gains(bands), "guide_mtf_gains": s2.mtf_gains(guide_bands), "holdout": held,
        "area_20m": {"rows": [r0, r1], "cols": [c0, c1]}, "reference_shape": [r1 - r0, c1 - c0],
        "checkpoint": checkpoint, "weights_sha256": card["weights"]["sha256"], "nfe_per_sample": nfe,
        "samples": samples, "nfe_total": nfe * samples, "seed": seed,
        "sampler": f"ddim (eta 0), mean of {samples} samples", "hardware": describe(device)}
    methods: dict[str, dict[str, Any]] = {}
    fused_all: dict[str, np.ndarray] = {}
    for name, (fused, secs) in s2.run_baselines(ms_low, guide_low, baselines, bands, guide_bands, ratio).items():
        methods[name] = _entry("classical", pansharpen_reduced(ref, fused, ratio), 0, secs)
        fused_all[name] = fused
        say(f"{name}: ERGAS {methods[name]['ergas']:.3f}, SAM {methods[name]['sam']:.3f}")
    with torch.no_grad():
        start = time.perf_counter()
        fused, std, run = pansharpen_scene(model, data, ms_low, guide_low, nfe=nfe, samples=samples, seed=seed,
                                           device=device, phase=s2.PHASE, engine=engine, gains=s2.mtf_gains(bands),
                                           consistency_steps=PANSHARPEN_CONSISTENCY)
        secs = time.perf_counter() - start
    methods["diffusion"] = _entry("diffusion", pansharpen_reduced(ref, fused, ratio), run.nfe * samples, secs)
    fused_all["diffusion"] = fused
    say(f"diffusion: ERGAS {methods['diffusion']['ergas']:.3f}, SAM {methods['diffusion']['sam']:.3f}, "
        f"{run.nfe} NFE x {samples}, {secs:.1f} s")
    result = {"task": "s2sr", "convention": CONVENTIONS["s2sr"], "params": params, "methods": methods,
              "_primary": "ergas"}
    result["_arrays"] = {"reference": ref, "ms_low": ms_low, "pan_low": guide_low, "fused": fused_all, "std": std}
    return result


# ------------------------------------------------------------------------------------------------
# cloud removal
# ------------------------------------------------------------------------------------------------
def _load_pairs(clear_path: Path, cloudy_path: Path, mask_path: Path | None
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    from scorerecon.modalities.optical.clouds import load_stack

    for p in (clear_path, cloudy_path, mask_path):
        if p is not None and p.suffix.lower() != ".npy":
            raise InputError(p, "cloud evaluation reads (time, y, x, band) .npy stacks (a GeoTIFF holds one date; "
                                "the model also needs another clear date)")
    clear, cloudy = load_stack(clear_path), load_stack(cloudy_path)
    if clear.shape != cloudy.shape:
        raise InputError(cloudy_path, f"cloudy stack {cloudy.shape} does not pair with the clear stack {clear.shape}")
    if clear.shape[0] < 2:
        raise InputError(clear_path, "needs at least two clear dates (each date is restored with an adjacent one)")
    mask = None
    if mask_path is not None:
        try:
            mask = np.load(mask_path, allow_pickle=False)
        except Exception as exc:
            raise InputError(mask_path, f"not a readable .npy array ({type(exc).__name__}: {exc})") from None
        if mask.ndim == 4 and mask.shape[-1] == 1:
            mask = mask[..., 0]
        if mask.shape != clear.shape[:3]:
            raise InputError(mask_path, f"mask {mask.shape} does not match the scenes {clear.shape[:3]}")
    return clear, cloudy, mask


def evaluate_cloud(clear_path: Path, cloudy_path: Path, mask_path: Path | None, *, checkpoint: str | None = None,
                   nfe: int = 10, samples: int = 8, seed: int = 0, baselines: list[str] | None = None,
                   device: str = "cpu", log: Any = None, other_dates: list[int] | None = None,
                   engine: Any = None) -> dict[str, Any]:
    """Baselines and the diffusion model's posterior on every date of the stacks (held-out columns).

    Date ``t`` is restored with clear date ``other_dates[t]`` of the stack as the other date
    (default: the adjacent one). The diffusion output is the composited posterior mean
    (:func:`~scorerecon.pipelines.reconstruct_remote.cloud_scene`): ``outside_equal`` is the
    fraction of values outside the mask equal to the input bit for bit; ``coverage90`` uses the
    checkpoint's split-conformal calibration when it applies to these settings
    (``coverage90_raw``: the uncalibrated mean +- 1.645 std). ``result["per_date"]`` has every
    date's metrics.
    """
    import torch

    from scorerecon.modalities.optical.baselines import CLOUD_BASELINES
    from scorerecon.modalities.optical.clouds import multitemporal_mask
    from scorerecon.modalities.optical.datasets import area_fingerprint
    from scorerecon.modalities.optical.metrics import cloud_metrics, interval_coverage
    from scorerecon.pipelines.hardware import describe
    from scorerecon.pipelines.reconstruct_remote import cloud_scene, cloud_settings, load_calibration, load_task_model

    say = log or (lambda msg: None)
    if samples < 2:
        raise InputError(None, f"--samples must be >= 2 for a posterior std, got {samples}")
    model, checkpoint = load_task_model("cloud", checkpoint, device)
    card = model.card
    baselines = list(CLOUD_BASELINES) if baselines is None else baselines
    unknown = [b for b in baselines if b not in CLOUD_BASELINES]
    if unknown:
        raise InputError(None, f"unknown baseline(s) {unknown}; choose from {list(CLOUD_BASELINES)}")
    clear, cloudy, masks = _load_pairs(clear_path, cloudy_path, mask_path)
    n_dates = clear.shape[0]
    if other_dates is None:
        other_dates = [t - 1 if t > 0 else t + 1 for t in range(n_dates)]
    if len(other_dates) != n_dates or any(not 0 <= o < n_dates or o == t for t, o in enumerate(other_dates)):
        raise InputError(clear_path, f"other_dates {other_dates}: need one other date (0..{n_dates - 1}, not itself) "
                                     "per date")
    calibration = load_calibration(checkpoint)
    off = ["no calibration file"] if calibration is None else calibration.mismatches(**cloud_settings(samples, nfe))
    known = set(card["data"].get("area_fingerprints", []))
    training_area = any(area_fingerprint(clear[t]) in known for t in range(n_dates))
    if training_area:
        x0, x1 = card["data"]["holdout"]["x"]
        cols, held = slice(int(x0), int(x1)), f"training area: held-out columns [{x0}, {x1}) only"
    else:
        cols, held = slice(0, clear.shape[2]), "input outside the training area: all of it is unseen"
    scenes = np.moveaxis(clear, -1, 1).astype(np.float64)[..., cols]
    inputs = np.moveaxis(cloudy, -1, 1).astype(np.float64)[..., cols]
    acc: dict[str, list[dict[str, float]]] = {}
    per_date: list[dict[str, Any]] = []
    secs: dict[str, float] = {}
    nfe_used = 0
    for t in range(n_dates):
        other = scenes[other_dates[t]]
        mask = masks[t][:, cols].astype(bool) if masks is not None else multitemporal_mask(inputs[t], other)
        if not mask.any():
            continue
        row: dict[str, Any] = {"date": t, "other_date": int(other_dates[t]), "cloud_fraction": float(mask.mean()),
                               "methods": {}}
        for name in baselines:
            start = time.perf_counter()
            est = CLOUD_BASELINES[name](inputs[t], mask, other)
            secs[name] = secs.get(name, 0.0) + time.perf_counter() - start
            row["methods"][name] = cloud_metrics(scenes[t], est, mask)
        start = time.perf_counter()
        with torch.no_grad():
            mean, std, run = cloud_scene(model, card["data"], inputs[t], mask.astype(np.float32), other, nfe=nfe,
                                         samples=samples, seed=seed + t, device=device, engine=engine)
        secs["diffusion"] = secs.get("diffusion", 0.0) + time.perf_counter() - start
        nfe_used = run.nfe
        m = cloud_metrics(scenes[t], mean, mask)
        m["outside_equal"] = float((mean[:, ~mask] == inputs[t][:, ~mask]).mean()) if (~mask).any() else 1.0
        m["coverage90_raw"] = interval_coverage(scenes[t], mean, std, mask, 0.9)
        if not off:
            half = calibration.half_width(std, mask)
            m["coverage90"] = float((np.abs(scenes[t] - mean) <= half)[:, mask].mean())
        m["std_inside"] = float(std[:, mask].mean())
        row["methods"]["diffusion"] = m
        per_date.append(row)
        say(f"date {t} (other {other_dates[t]}): diffusion PSNR inside {m['psnr_inside']:.2f} dB, coverage "
            f"{m.get('coverage90', float('nan')):.3f}")
        for name, metrics in row["methods"].items():
            acc.setdefault(name, []).append(metrics)
    if not acc:
        raise InputError(mask_path or cloudy_path, "no date has any cloudy pixel in the evaluated area")
    methods = {}
    for name, rows in acc.items():
        mean_metrics = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
        fam = "diffusion" if name == "diffusion" else "classical"
        methods[name] = _entry(fam, mean_metrics, nfe_used * samples if fam == "diffusion" else 0, secs[name])
    params = {"clear": str(clear_path), "cloudy": str(cloudy_path), "mask": str(mask_path) if mask_path else
              "multi-temporal blue test", "holdout": held, "dates": int(n_dates),
              "evaluated_shape": list(scenes.shape[-2:]), "other_dates": list(map(int, other_dates)),
              "checkpoint": checkpoint, "weights_sha256": card["weights"]["sha256"], "nfe_per_sample": nfe,
              "samples": samples, "seed": seed, "sampler": "ddim (eta 1)", "hardware": describe(device),
              "composite": "outside the mask the input; inside the posterior mean, feathered",
              "interval": "split conformal (checkpoint calibration)" if not off else f"uncalibrated: {', '.join(off)}",
              "averaging": "metrics per date, then the mean over dates"}
    return {"task": "cloud", "convention": CONVENTIONS["cloud"], "params": params, "methods": methods,
            "per_date": per_date, "_primary": "psnr_inside"}


def calibrate_cloud(checkpoint: str | None = None, *, nfe: int = 10, samples: int = 8, seed: int = 0,
                    level: float = 0.9, edges: tuple[float, ...] = (2.0, 4.0, 8.0, 16.0), min_gap_days: int = 21,
                    device: str = "cpu", log: Any = None) -> Any:
    """Fit and save the checkpoint's split-conformal interval calibration on its *training* area.

    Calibration scenes: the card's training columns, its training cloud shapes and every pair of
    its clear dates at least ``min_gap_days`` apart (as evaluated), cloudy scenes made as in
    training. Scores ``|clear - mean| / std`` of :func:`cloud_scene`'s composite inside the mask,
    grouped by band and by distance to the nearest clear pixel (``edges``). Held-out columns,
    shapes and every evaluation input stay untouched. Writes ``interval_calibration.json``
    beside the weights and returns the :class:`~scorerecon.modalities.optical.conformal.IntervalCalibration`.
    """
    import torch

    from scorerecon.modalities.optical import clouds
    from scorerecon.modalities.optical.conformal import IntervalCalibration, distance_groups, normalised_scores
    from scorerecon.pipelines.reconstruct_remote import CALIBRATION_FILE, cloud_scene, cloud_settings, load_task_model

    say = log or (lambda msg: None)
    model, checkpoint = load_task_model("cloud", checkpoint, device)
    data = model.card["data"]
    stack = clouds.load_stack(clouds.REMOTE_DIR / "s2_l1c_reference_scenes.npy")
    probs = clouds.load_stack(clouds.REMOTE_DIR / "s2_cloud_probability.npy")[..., 0]
    shape_masks = clouds.load_stack(clouds.REMOTE_DIR / "s2_cloud_mask.npy")[..., 0].astype(bool)
    c0, c1 = data["train_columns"]
    scenes = np.moveaxis(stack, -1, 1).astype(np.float64)[..., c0:c1]
    layer = scenes[data["cloud_layer_date"]]
    pairs = clouds.date_pairs(clouds.reference_dates(), list(data["clear_dates"]), min_gap_days)
    scores, groups = [], []
    for t, o in pairs:
        for shape in data["train_shape_dates"]:
            mask = shape_masks[shape][:, c0:c1]
            if not mask.any():
                continue
            cloudy = clouds.blend(scenes[t], clouds.cloud_opacity(probs[shape][:, c0:c1]), layer).astype(np.float64)
            with torch.no_grad():
                mean, std, _ = cloud_scene(model, data, cloudy, mask.astype(np.float32), scenes[o], nfe=nfe,
                                           samples=samples, seed=seed + shape, device=device)
            scores.append(normalised_scores(scenes[t], mean, std, mask))
            groups.append(distance_groups(mask, list(edges)))
        say(f"calibration pair {t} <- {o}: {len(scores)} scenes so far")
    source = (f"training columns [{c0}, {c1}), training cloud shapes {list(data['train_shape_dates'])}, date pairs "
              f"{[list(p) for p in pairs]} (>= {min_gap_days} days apart), {len(scores)} scenes")
    cal = IntervalCalibration.fit(np.concatenate(scores, 1), np.concatenate(groups), level, list(edges),
                                  cloud_settings(samples, nfe), source)
    cal.save(Path(checkpoint) / CALIBRATION_FILE)
    return cal


def evaluate_from_args(args: argparse.Namespace, log: Any) -> dict[str, Any]:
    """The ``scorerecon evaluate`` entry point for ``--task pansharpen``, ``s2sr`` and ``cloud``."""
    from scorerecon.pipelines.evaluate import _csv

    default_nfe, default_samples = DEFAULT_SAMPLING[args.task]
    nfe = default_nfe if args.nfe is None else int(args.nfe)
    samples = default_samples if args.samples is None else int(args.samples)
    if nfe < 1 or samples < 1:
        raise InputError(None, f"--nfe and --samples must be >= 1, got {nfe} and {samples}")
    if args.task == "s2sr":
        if not args.ms:
            raise InputError(None, "--task s2sr needs --ms FILE... (the 20 m and 10 m Sentinel-2 band files)")
        result = evaluate_s2sr(list(args.ms), checkpoint=args.checkpoint, nfe=nfe, samples=samples, seed=args.seed,
                               baselines=_csv(args.baselines), crop=args.crop, device=args.device, log=log,
                               engine=engine_config(args))
        result.pop("_arrays")
        return result
    if args.task == "pansharpen":
        if not args.ms:
            raise InputError(None, "--task pansharpen needs --ms FILE... (MS band files or one .npy)")
        ratio = 2 if args.ratio is None else int(args.ratio)
        # None: the serving prior's defaults (the Landsat-8 prior's or the any-band prior's)
        result = evaluate_pansharpen(list(args.ms), args.pan, ratio, checkpoint=args.checkpoint, nfe=args.nfe,
                                     samples=args.samples, seed=args.seed, baselines=_csv(args.baselines),
                                     crop=args.crop, device=args.device, log=log, engine=engine_config(args))
        arrays = result.pop("_arrays")
        if getattr(args, "images", None) is not None:  # --images: the report's picture set
            from scorerecon.pipelines.panels import pansharpen_panels

            result["_panels"] = pansharpen_panels(arrays, result)
        return result
    if args.clear is None or args.cloudy is None:
        raise InputError(None, "--task cloud needs --clear FILE and --cloudy FILE")
    mask = Path(args.mask) if args.mask else None
    return evaluate_cloud(args.clear, args.cloudy, mask, checkpoint=args.checkpoint, nfe=nfe,
                          samples=samples, seed=args.seed,
                          baselines=_csv(args.baselines), device=args.device, log=log, engine=engine_config(args))
