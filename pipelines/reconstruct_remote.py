"""Diffusion pan-sharpening and cloud removal of whole georeferenced scenes, tiled, and their CLI.

``scorerecon reconstruct --task pansharpen --input STORE.zarr -o OUT.zarr`` reads a store made by
``scorerecon ingest`` from a pan + MS product (Landsat-8: group ``res_15m`` holds the pan band,
``res_30m`` the MS bands), runs the conditional residual-diffusion model of
``checkpoints/landsat8_pansharpen`` over the pan grid and writes the sharpened MS bands on that
grid: ``image (band, y, x)`` float32 in the input's units, with the pan group's exact ``x`` /
``y`` coordinates and ``spatial_ref`` (CRS + GeoTransform), i.e. the MS transform scaled by
``1 / ratio`` and shifted by the grid phase (:func:`~scorerecon.modalities.optical.degradation.grid_phase`).
The output is the mean of ``--samples`` (default 5) DDIM samples of ``--nfe`` (default 2) steps,
and their per-pixel std (``std``). ``scorerecon export --format geotiff`` turns it into a COG.
An MS group the Landsat-8 prior cannot serve (other bands or sensor: Landsat-7 ETM+ ``LE07_..._B*.TIF``, a
band subset, ...) whose wavelengths are known from the ingested file names goes to the any-band prior
(:func:`anyband_scene`, ``checkpoints/anyband_pansharpen``, ratio 2), with one ``note: any-band prior: ...``
line; where neither prior serves, MTF-GLP + back-projection with ``note: classical fallback: ...``
(:func:`_pansharpen_classical`).
A pan grid whose row and column phases differ (pan starting on an MS pixel centre in one axis only) is
mirror-padded to a common phase and the output cropped back (:func:`align_pan`), so the output keeps the pan's
exact grid.
Both tasks' outputs carry the provenance every reconstruction does
(:func:`scorerecon.pipelines.record.finish_output`: the source files of every input store read,
the prior, the command, versions) plus ``crs`` and ``transform`` attrs mirroring ``spatial_ref``.

``--task s2sr --input S2.zarr -o OUT.zarr`` reads a store ingested from Sentinel-2 band files
(``scorerecon ingest s2_B*.jp2``: groups ``res_10m`` and ``res_20m``), and writes B05, B06, B07,
B8A, B11, B12 sharpened onto the 10 m group's grid (its ``x`` / ``y`` and ``spatial_ref``) with the
``checkpoints/s2_sr20`` model, guided by B02, B03, B04, B08; the half-pixel offset of the
block-aligned grids comes from :func:`~scorerecon.modalities.optical.degradation.grid_offset`.

``--task cloud --input CLOUDY.zarr --other CLEAR.zarr [--cloud-mask MASK.zarr]`` reads two
single-grid 13-band Sentinel-2 stores (the cloudy date and another clear date of the same grid),
draws ``--samples`` (default 8) posterior samples of the clear scene, ``--nfe`` (default 10) DDIM
steps (eta 1) each, with ``checkpoints/s2_cloud`` and writes their mean (``image``), per-pixel std
(``std``) and the mask used (``cloud_mask``) with the input's georeference. ``--reflectance-scale``
divides the store's values first (10000 for L1C digital numbers). Without a mask
the multi-temporal blue test of :func:`~scorerecon.modalities.optical.clouds.multitemporal_mask`
finds the clouds.

Tiling: both tasks go through :class:`~scorerecon.pipelines.engine.TileEngine` -- overlapping
tiles (``--tile``, ``--overlap``; the condition rides in ``TileItem.cond``; no guidance) fused at
every DDIM step (``fuse=True``, :mod:`~scorerecon.pipelines.multidiffusion`): each posterior
sample is one coherent image with one per-pixel noise field and its own seed, so the std over
samples shows no tile pattern (blending independently sampled tiles averaged them in the
overlaps and deflated the std there). Each tile reads only its window of the store
(dask), and for pan-sharpening interpolates its MS window with a ``HALO`` of coarse pixels so a
tile's interpolated MS equals the whole scene's to ~1e-7 (cubic-spline prefilter decay). Memory
is bounded by the batch plus the stitcher's float64 accumulator of the output scene. Scenes
smaller than a tile are reflect-padded to the UNet's multiple of 4 and cropped back.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from scorerecon.pipelines.errors import InputError
from scorerecon.pipelines.options import engine_config
from scorerecon.pipelines.tasks.registry import TASKS

#: views of the task registry (:mod:`scorerecon.pipelines.tasks.registry`): the default checkpoint and
#: (DDIM steps per sample, samples) when --nfe / --samples are not given
DEFAULT_CHECKPOINTS = {t: TASKS[t].default_prior for t in ("pansharpen", "s2sr", "cloud")}
DEFAULT_SAMPLING = {t: (TASKS[t].nfe, TASKS[t].samples) for t in ("pansharpen", "s2sr", "cloud")}
HALO = 12  # coarse MS pixels read around a tile for the interpolation
#: cloud removal: length (pixels) of the composite's ramp inside the mask (:func:`.clouds.feather`)
FEATHER_RADIUS = 2.0
#: the split-conformal interval calibration, beside the cloud checkpoint's weights
CALIBRATION_FILE = "interval_calibration.json"
MULTIPLE = 4  # the tiny/small UNets downsample twice
#: pan-sharpening where the prior cannot serve the band set: the best classical method by ERGAS on every
#: held-out benchmark (MTF-GLP + back-projection; docs/remote_sensing.md), generic MTF gains for unknown sensors
FALLBACK_METHOD = "mtf_glp_bp"
#: the any-band prior (:mod:`scorerecon.modalities.optical.anyband`): sharpens band sets the Landsat-8 prior
#: cannot serve (any count, known wavelengths, ratio 2); the pansharpen task's registry role ``anyband``
#: (its ``cond``, the Landsat-8 prior, stays the default for exact Landsat-8 B1-B7)
ANYBAND_CHECKPOINT = TASKS["pansharpen"].priors["anyband"]
#: its (DDIM steps per sample, samples) when --nfe / --samples are not given, chosen on Landsat-8 and
#: Sentinel-2 *training* columns (benchmarks/pansharpen_anyband.py --tune), never on held-out data: 2 x 5 is
#: within 0.4 / 0.8 points of the best 10-NFE split there (1 x 10) and is the pansharpen task's registry
#: default, which ``scorerecon reconstruct`` fills in for --nfe before the prior is chosen
ANYBAND_SAMPLING = (2, 5)
#: back-projection steps onto the measured MS after sampling
#: (:func:`~scorerecon.modalities.optical.anyband.consistency`), chosen with the sampling on training columns
ANYBAND_CONSISTENCY = 5
#: target-adaptive fine-tuning of the any-band prior on the scene's own inputs one scale down before sampling
#: (:func:`~scorerecon.modalities.optical.anyband.adaptation_pairs`,
#: :func:`~scorerecon.models.adaptation.dsm_adaptation`; A-PNN, Scarpa et al. 2018): Adam steps, rate, pairs
#: per step and their side; the steps chosen on training columns (benchmarks/pansharpen_anyband.py
#: --tune-adaptation); ``None`` switches it off
ANYBAND_ADAPTATION: dict[str, Any] | None = {"steps": 200, "lr": 1e-4, "batch": 8, "patch": 64}
#: back-projection steps given to every sample of the Landsat-8 pan-sharpening and Sentinel-2 20 -> 10 m priors
#: (``pansharpen_scene``): as many as the ``mtf_glp_bp`` baseline gets (converging: held-out ERGAS changes < 0.6 %
#: from 8 to 15 steps for both); without it MTF-GLP + back-projection beat the Landsat-8 prior
#: (docs/remote_sensing.md, 2026-12-05 evening)
PANSHARPEN_CONSISTENCY = 8


def load_task_model(task: str, checkpoint: str | Path | None = None, device: str = "cpu") -> tuple[Any, str]:
    """The conditional model for ``task`` (default checkpoint if ``None``), in eval mode, and its resolved path.

    Refuses a checkpoint whose card was trained for another task (``data.task``).
    """
    from scorerecon.models.checkpoint import load_score_model

    checkpoint = str(checkpoint or DEFAULT_CHECKPOINTS[task])
    model = load_score_model(checkpoint, device=device)
    model.eval()
    trained_for = model.card.get("data", {}).get("task")
    if trained_for != task:
        raise InputError(checkpoint, f"checkpoint is not a {task} model (card data.task = {trained_for!r})")
    return model, str(model.checkpoint_path)


def pansharpen_fallback_reason(names: list[str], ratio: int, card_data: dict[str, Any]) -> str | None:
    """Why the prior cannot sharpen bands ``names`` at ``ratio`` (``None``: it can).

    Then ``evaluate`` scores the classical methods only and ``reconstruct`` runs
    :data:`FALLBACK_METHOD`, each saying so in one line.
    """
    bands = list(card_data["bands"])
    missing = [b for b in bands if b not in names]
    if missing:
        have = "none of them" if len(missing) == len(bands) else f"not {', '.join(missing)}"
        return f"the prior sharpens Landsat-8 OLI {', '.join(bands)}; the input has {', '.join(names)} ({have})"
    if ratio != int(card_data["ratio"]):
        return f"the prior was trained for ratio {card_data['ratio']}, not {ratio}"
    return None


def is_anyband(card_data: dict[str, Any]) -> bool:
    """Whether a pan-sharpening card is the any-band prior's."""
    return card_data.get("kind") == "anyband"


def anyband_reason(bands: list[Any], names: list[str], ratio: int, card_data: dict[str, Any] | None) -> str | None:
    """Why the any-band prior cannot sharpen ``names`` (their :class:`~.bands.Band` or ``None``) at ``ratio``
    (``None``: it can)."""
    from scorerecon.modalities.optical.anyband import unknown_bands

    if card_data is None:
        return f"the any-band prior ({ANYBAND_CHECKPOINT}) is not installed"
    unknown = unknown_bands(bands, names)
    if unknown:
        return (f"the any-band prior needs each band's wavelengths and {', '.join(unknown)} are unknown (name the "
                "files like the sensor's products: LE07_..._B1.TIF, l8_B4.tif, s2_B8A.jp2)")
    if ratio != int(card_data["ratio"]):
        return f"the any-band prior was trained for ratio {card_data['ratio']}, not {ratio}"
    return None


def load_anyband(checkpoint: str | Path | None, device: str = "cpu") -> tuple[Any, str] | None:
    """The any-band prior (``checkpoint`` or :data:`ANYBAND_CHECKPOINT`), or ``None`` when it is not installed."""
    from scorerecon.models.checkpoint import resolve_checkpoint

    try:
        resolve_checkpoint(str(checkpoint or ANYBAND_CHECKPOINT))
    except Exception:
        if checkpoint is not None:
            raise
        return None
    model, path = load_task_model("pansharpen", checkpoint or ANYBAND_CHECKPOINT, device)
    if not is_anyband(model.card["data"]):
        raise InputError(path, "checkpoint is not the any-band pan-sharpening prior (card data.kind != 'anyband')")
    return model, path


def anyband_scene(model: Any, card_data: dict[str, Any], ms: Any, pan: Any, bands: list[Any], ratio: int,
                  phase: float | tuple[float, float] | None, pan_range: tuple[float, float],
                  gains: list[float] | None = None, *, nfe: int = 2, samples: int = 5, seed: int = 0, tile: int = 128,
                  overlap: float = 0.25, batch_size: int | None = None, device: str = "cpu",
                  engine: Any = None, consistency_steps: int | None = None, adaptation: dict[str, Any] | None = None,
                  pan_gain: float | None = None, record: dict[str, Any] | None = None
                  ) -> tuple[np.ndarray, np.ndarray, Any]:
    """Sharpen ``ms`` ``(C, h, w)`` band by band with the any-band prior -> mean, std ``(C, H, W)`` float32.

    ``adaptation`` (e.g. :data:`ANYBAND_ADAPTATION`) first fine-tunes a copy of the prior on pairs made from
    this scene's own inputs one scale down (``pan_gain``: the pan's MTF gain, default Landsat-8 B8's as in
    ``evaluate``); ``record["adaptation"]`` then says what was adapted, or why it was skipped (a scene too
    small for pairs), in which case the prior runs unadapted.

    Every band's conditions come from the whole scene (:func:`~scorerecon.modalities.optical.anyband.prepare`:
    interpolation, MTF-GLP with its scene-wide injection gains, pan z-score); then ``samples`` posterior samples
    of each band (coherent images, fused tiles; one engine run per band, which bounds memory) run through
    the tile engine; each output is ``MTF-GLP + x * sd_b / residual_scale`` in the input's units, then
    ``consistency_steps`` (default :data:`ANYBAND_CONSISTENCY`) back-projection steps onto the band's measurement.
    """
    from scorerecon.modalities.optical.anyband import consistency, prepare
    from scorerecon.pipelines.engine import TileItem
    from scorerecon.pipelines.tiling import TileGrid

    scale = float(card_data["normalization"]["residual_scale"])
    low = np.asarray(ms, np.float64)
    gains = [b.mtf_nyquist for b in bands] if gains is None else list(gains)
    steps = ANYBAND_CONSISTENCY if consistency_steps is None else int(consistency_steps)
    stack = prepare(low, np.asarray(pan, np.float64), ratio, phase, bands, pan_range, gains,
                    base_steps=int(card_data.get("base_steps", 0)))
    channels = int(stack.up.shape[0])
    h, w = stack.panz.shape
    (hp, wp), size = _grid_shape(h, w, tile, overlap)
    if (hp, wp) != (h, w):  # a scene smaller than a tile: reflect-pad to the UNet's multiple, crop back below
        pad = ((0, 0), (0, hp - h), (0, wp - w))
        stack.up, stack.glp = np.pad(stack.up, pad, mode="symmetric"), np.pad(stack.glp, pad, mode="symmetric")
        stack.panz = np.pad(stack.panz, pad[1:], mode="symmetric")

    def read(t: Any) -> Any:
        k = int(t.source[1:].split("s")[0])
        rows, cols = t.slices
        cond = stack.cond(k, rows, cols)
        base = stack.glp[k:k + 1, rows, cols].astype(np.float32)
        unit = np.full((1, 1, 1), stack.unit(k, scale), np.float32)
        return TileItem(t, cond=torch.from_numpy(cond), data={"base": torch.from_numpy(base),
                                                              "unit": torch.from_numpy(unit)})

    def post(batch: Any, x: torch.Tensor) -> torch.Tensor:
        return batch.data["base"] + x.float() * batch.data["unit"]

    from dataclasses import replace

    if adaptation:
        model = _adapt_anyband(model, card_data, low, np.asarray(pan, np.float64), ratio, phase, bands, pan_range,
                               gains, pan_gain, adaptation, seed, record)
    engine = _engine(model, device, seed, batch_size, engine)
    mean, std, runs = np.empty((channels, h, w), np.float32), np.empty((channels, h, w), np.float32), []
    for k in range(channels):  # one band at a time: the fused path holds every tile of its images in memory
        grids = [TileGrid((1, hp, wp), size, overlap, source=f"b{k}s{i}") for i in range(samples)]
        runs.append(engine.run(grids, read, sampler="ddim", nfe=nfe, postprocess=post, eta=0.0, fuse=True))
        out = np.stack([consistency(runs[-1].outputs[g.source][0, :h, :w].double().numpy(), low[k], ratio, phase,
                                    gains[k], steps) for g in grids])
        mean[k] = out.mean(0)
        std[k] = out.std(0, ddof=1) if samples > 1 else 0.0
    result = replace(runs[-1], n_tiles=sum(r.n_tiles for r in runs), n_batches=sum(r.n_batches for r in runs))
    return mean, std, result


def _adapt_anyband(model: Any, card_data: dict[str, Any], low: np.ndarray, pan: np.ndarray, ratio: int,
                   phase: Any, bands: list[Any], pan_range: tuple[float, float], gains: list[float],
                   pan_gain: float | None, adaptation: dict[str, Any], seed: int, record: dict[str, Any] | None) -> Any:
    """The any-band prior fine-tuned on this scene's own reduced-resolution pairs, or ``model`` when it cannot be."""
    from scorerecon.modalities.optical.anyband import adaptation_pairs
    from scorerecon.modalities.optical.bands import LANDSAT8
    from scorerecon.models.adaptation import dsm_adaptation

    options = dict(adaptation)
    draw, why = adaptation_pairs(low, pan, ratio, phase, bands, pan_range, gains,
                                 LANDSAT8["B08"].mtf_nyquist if pan_gain is None else float(pan_gain),
                                 float(card_data["normalization"]["residual_scale"]),
                                 int(card_data.get("base_steps", 0)), options.pop("patch", 64), options.pop("batch", 8))
    if draw is None:
        info: dict[str, Any] = {"method": "dsm", "skipped": why}
        adapted = model
    else:
        adapted, info = dsm_adaptation(model, draw, seed=seed, **options)
        adapted.card = model.card
    if record is not None:
        record["adaptation"] = info
    return adapted


def align_pan(pan: Any, phase: tuple[int, int], ratio: int, where: Any = None) -> tuple[Any, int, tuple[int, int]]:
    """``pan`` padded at its start (mirrored rows / columns) so that both axes have grid phase ``ratio // 2``.

    Pan-sharpening filters take one phase for both axes; a product whose pan starts on an MS pixel centre in one
    axis only (the r-cran-satellite Landsat-7 tile: row phase 0, column phase 1) gets the missing leading pan
    rows mirrored. Returns the pan, the common phase and the ``(rows, cols)`` padded (crop them off the output).
    Equal phases are returned unchanged; a phase beyond ``ratio // 2`` in one axis only is refused.
    """
    if phase[0] == phase[1]:
        return pan, int(phase[0]), (0, 0)
    target = ratio // 2
    pads = (target - int(phase[0]), target - int(phase[1]))
    if min(pads) < 0:
        raise InputError(where, f"row and column grid phases differ ({tuple(phase)}); unsupported")
    return np.pad(np.asarray(pan, np.float64), ((pads[0], 0), (pads[1], 0)), mode="symmetric"), target, pads


def _padded(n: int, tile: int) -> int:
    return n if n >= tile else int(math.ceil(n / MULTIPLE) * MULTIPLE)


def _window(array: Any, rows: tuple[int, int], cols: tuple[int, int]) -> np.ndarray:
    """``array[..., r0:r1, c0:c1]`` with reflect padding where the window leaves the array."""
    h, w = array.shape[-2:]
    r0, r1 = max(rows[0], 0), min(rows[1], h)
    c0, c1 = max(cols[0], 0), min(cols[1], w)
    block = np.asarray(array[..., r0:r1, c0:c1], dtype=np.float64)
    pad = [(0, 0)] * (block.ndim - 2) + [(r0 - rows[0], rows[1] - r1), (c0 - cols[0], cols[1] - c1)]
    return np.pad(block, pad, mode="symmetric") if any(p != (0, 0) for p in pad) else block


def _engine(model: Any, device: str, seed: int, batch_size: int | None, engine: Any = None) -> Any:
    """The tile engine for a scene: ``engine`` (an EngineConfig from the command line) or the defaults."""
    from dataclasses import replace

    from scorerecon.pipelines.engine import EngineConfig, TileEngine

    config = EngineConfig(prefetch=1) if engine is None else engine
    return TileEngine(model, replace(config, device=device, seed=seed,
                                     batch_size=batch_size if batch_size is not None else config.batch_size))


def _grid_shape(h: int, w: int, tile: int, overlap: float) -> tuple[tuple[int, int], tuple[int, int]]:
    if tile % MULTIPLE:
        raise InputError(None, f"--tile must be a multiple of {MULTIPLE}, got {tile}")
    hp, wp = _padded(h, tile), _padded(w, tile)
    return (hp, wp), (min(tile, hp), min(tile, wp))


def pansharpen_scene(model: Any, card_data: dict[str, Any], ms: Any, pan: Any, *, nfe: int = 2, samples: int = 5,
                     seed: int = 0, tile: int = 128, overlap: float = 0.25, batch_size: int | None = None,
                     device: str = "cpu", eta: float = 0.0, phase: float | tuple[float, float] | None = None,
                     engine: Any = None, gains: Any = None, consistency_steps: int = 0
                     ) -> tuple[np.ndarray, np.ndarray, Any]:
    """Sharpen ``ms`` ``(C, h, w)`` with ``pan`` ``(H, W)`` (data units, numpy or lazy) -> ``(C, H, W)``.

    Fine pixel ``k`` lies at coarse coordinate ``(k - phase) / ratio`` (default phase: the card's;
    half-integer and per-axis ``(row, col)`` phases for block-aligned grids). ``pan`` may be a
    guide of several bands ``(G, H, W)`` (Sentinel-2 20 -> 10 m, ``--task s2sr``).
    ``samples`` posterior samples of ``nfe`` DDIM steps each (``nfe * samples`` network
    evaluations per pixel; default 2 x 5 = 10) are averaged: the mean estimates the posterior
    mean (the MSE-optimal output ERGAS rewards), their std is the per-pixel uncertainty.
    With ``consistency_steps`` > 0 and the bands' MTF ``gains``, every sample is back-projected onto the
    measured MS (:func:`~scorerecon.modalities.optical.degradation.back_project`) before mean and std, so the
    output degrades exactly to the input like the ``mtf_glp_bp`` baseline (:data:`PANSHARPEN_CONSISTENCY`).
    Returns mean and std (float32, data units) and the :class:`~scorerecon.pipelines.engine.EngineResult`.
    """
    from scorerecon.modalities.optical.datasets import PansharpenCoding
    from scorerecon.modalities.optical.degradation import upsample
    from scorerecon.pipelines.engine import TileItem
    from scorerecon.pipelines.tiling import TileGrid

    coding = PansharpenCoding.from_card(card_data)
    ratio = int(card_data["ratio"])
    phase = card_data["phase"] if phase is None else phase
    # (row, col) phases: integers (Landsat-8) or half-integers (block-aligned Sentinel-2 grids)
    phases = (float(phase), float(phase)) if np.isscalar(phase) else (float(phase[0]), float(phase[1]))
    channels = int(ms.shape[0])
    if channels != len(coding.ms_lo):
        raise InputError(None, f"{channels} MS bands given; the model sharpens {len(coding.ms_lo)} "
                               f"({', '.join(card_data['bands'])})")
    h, w = pan.shape[-2:]
    (hp, wp), size = _grid_shape(h, w, tile, overlap)
    grids = [TileGrid((channels, hp, wp), size, overlap, source=f"sample{i}") for i in range(samples)]
    scale = torch.as_tensor((coding.ms_hi - coding.ms_lo) / coding.residual_scale, dtype=torch.float32)

    def read(t: Any) -> Any:
        (r0, r1), (c0, c1) = ((s.start, s.stop) for s in t.slices)
        pr, pc = phases
        j0 = max(0, math.floor((r0 - pr) / ratio) - HALO)
        j1 = min(ms.shape[-2], math.floor((r1 - 1 - pr) / ratio) + HALO + 2)
        i0 = max(0, math.floor((c0 - pc) / ratio) - HALO)
        i1 = min(ms.shape[-1], math.floor((c1 - 1 - pc) / ratio) + HALO + 2)
        window = np.asarray(ms[:, j0:j1, i0:i1], dtype=np.float64)
        up = upsample(window, ratio, (r1 - r0, c1 - c0), phases, offset=(r0 - ratio * j0, c0 - ratio * i0))
        cond = coding.cond(up, _window(pan, (r0, r1), (c0, c1)))
        return TileItem(t, cond=torch.from_numpy(cond), data={"up": torch.from_numpy(up.astype(np.float32))})

    def post(batch: Any, x: torch.Tensor) -> torch.Tensor:
        return batch.data["up"] + x.float() * scale.to(x.device)[None, :, None, None]

    engine = _engine(model, device, seed, batch_size, engine)
    result = engine.run(grids, read, sampler="ddim", nfe=nfe, postprocess=post, eta=eta, fuse=True)
    stack = torch.stack([result.outputs[g.source][:, :h, :w] for g in grids]).double()
    if consistency_steps > 0:
        from scorerecon.modalities.optical.degradation import back_project

        if gains is None or phases[0] != phases[1]:
            raise InputError(None, "back-projection needs the bands' MTF gains and one grid phase for both axes")
        low = np.asarray(ms, np.float64)
        stack = torch.stack([torch.from_numpy(back_project(x.numpy(), low, ratio, list(gains), phases[0],
                                                           consistency_steps)) for x in stack])
    std = stack.std(0, unbiased=True) if samples > 1 else torch.zeros_like(stack[0])
    return stack.mean(0).float().numpy(), std.float().numpy(), result


def cloud_scene(model: Any, card_data: dict[str, Any], cloudy: Any, mask: Any, other: Any, *, nfe: int = 10,
                samples: int = 8, seed: int = 0, tile: int = 64, overlap: float = 0.25,
                batch_size: int | None = None, device: str = "cpu", eta: float = 1.0,
                feather_radius: float = FEATHER_RADIUS, engine: Any = None) -> tuple[np.ndarray, np.ndarray, Any]:
    """The clear scene under ``cloudy`` (reflectance ``(B, H, W)``): composited mean and its std.

    The other date is first radiometrically matched to ``cloudy`` on its clear pixels over the
    whole scene (:func:`~scorerecon.modalities.optical.baselines.radiometric_match`, as in
    training); a residual model (card ``normalization.residual_scale``) generates the difference
    from the matched nearest-date composite. ``samples`` posterior samples (each one coherent
    image with its own seed) go through the engine together. Their mean is composited with the
    input (:func:`~scorerecon.modalities.optical.clouds.composite`, weight
    :func:`~scorerecon.modalities.optical.clouds.feather` ``(mask, feather_radius)``): outside
    the mask the result *is* ``cloudy``, bit for bit, and the returned std is ``weight x`` the
    samples' std (0 there).
    """
    from scorerecon.modalities.optical.baselines import radiometric_match, temporal
    from scorerecon.modalities.optical.clouds import composite, feather
    from scorerecon.modalities.optical.datasets import CloudCoding
    from scorerecon.pipelines.engine import TileItem
    from scorerecon.pipelines.tiling import TileGrid

    coding = CloudCoding.from_card(card_data)
    bands = int(cloudy.shape[0])
    if bands != len(coding.lo) or other.shape[0] != bands:
        raise InputError(None, f"cloud removal needs {len(coding.lo)} bands in the cloudy and the other date, "
                               f"got {cloudy.shape[0]} and {other.shape[0]}")
    cloudy = np.asarray(cloudy)
    binary = np.asarray(mask) > 0.5
    other = radiometric_match(np.asarray(other), cloudy, binary)
    base = coding.encode(temporal(cloudy, binary, other)) if coding.residual_scale is not None else None
    h, w = cloudy.shape[-2:]
    (hp, wp), size = _grid_shape(h, w, tile, overlap)
    grids = [TileGrid((bands, hp, wp), size, overlap, source=f"sample{i}") for i in range(samples)]

    def read(t: Any) -> Any:
        rows, cols = ((s.start, s.stop) for s in t.slices)
        cond = coding.cond(_window(cloudy, rows, cols), _window(binary, rows, cols) > 0.5, _window(other, rows, cols))
        data = {} if base is None else {"base": torch.from_numpy(_window(base, rows, cols).astype(np.float32))}
        return TileItem(t, cond=torch.from_numpy(cond), data=data)

    lo = torch.as_tensor(coding.lo, dtype=torch.float32)[None, :, None, None]
    hi = torch.as_tensor(coding.hi, dtype=torch.float32)[None, :, None, None]

    def post(batch: Any, x: torch.Tensor) -> torch.Tensor:
        v = x.float() if base is None else batch.data["base"] + x.float() / coding.residual_scale
        return (v + 1) / 2 * (hi - lo).to(x.device) + lo.to(x.device)

    engine = _engine(model, device, seed, batch_size, engine)
    result = engine.run(grids, read, sampler="ddim", nfe=nfe, postprocess=post, eta=eta, fuse=True)
    stack = torch.stack([result.outputs[g.source][:, :h, :w] for g in grids]).double()
    std = stack.std(0, unbiased=True) if samples > 1 else torch.zeros_like(stack[0])
    weight = feather(binary, feather_radius)
    return composite(cloudy, stack.mean(0).numpy(), weight), weight[None] * std.numpy(), result


# ------------------------------------------------------------------------------------------------
# the CLI
# ------------------------------------------------------------------------------------------------
def _geo_group(store: Path, group: str) -> Any:
    from scorerecon.modalities.io.store import open_store

    ds = open_store(store, group)
    if "image" not in ds.data_vars or tuple(ds["image"].dims) != ("band", "y", "x"):
        raise InputError(store, f"group {group!r} holds no georeferenced image (band, y, x); ingest GeoTIFF/JP2 "
                                "bands with scorerecon ingest")
    if ds["image"].rio.crs is None:
        raise InputError(store, f"group {group!r} carries no CRS (spatial_ref)")
    return ds


def _select_bands(ds: Any, names: list[str], store: Path, group: str) -> Any:
    have = [str(b) for b in ds["band"].values]
    missing = [n for n in names if n not in have]
    if missing:
        raise InputError(store, f"group {group!r} lacks bands {missing} the model needs (it has {have})")
    return ds["image"].sel(band=names)


def _pansharpen_store(args: argparse.Namespace, model: Any) -> tuple[Any, dict[str, Any]]:
    import xarray as xr

    from scorerecon.modalities.io.store import store_groups
    from scorerecon.modalities.optical.degradation import grid_phase

    data = model.card["data"]
    groups = [g for g in store_groups(args.input) if g.startswith("res_")]
    if len(groups) < 2:
        raise InputError(args.input, f"--task pansharpen needs a store with a pan and an MS resolution group "
                                     f"(res_15m + res_30m from scorerecon ingest l8_B*.tif), found {groups or 'none'}")
    sets = [_geo_group(args.input, g) for g in groups]
    res = [abs(float(ds["image"].rio.resolution()[0])) for ds in sets]
    fine = int(np.argmin(res))
    pan_ds = sets[fine]
    multiples = {i: r / res[fine] for i, r in enumerate(res) if i != fine}
    whole = {i: round(m) for i, m in multiples.items() if round(m) >= 2 and math.isclose(m, round(m), rel_tol=1e-6)}
    if not whole:
        raise InputError(args.input, f"no group at an integer multiple (>= 2) of the pan resolution {res[fine]:g} "
                                     f"(groups {groups})")
    # the prior's own ratio first, then the finest MS group
    ms_i = min(whole, key=lambda i: (whole[i] != int(data["ratio"]), whole[i]))
    ratio, ms_ds = whole[ms_i], sets[ms_i]
    pan_names = [str(b) for b in pan_ds["band"].values]
    pan_name = args.pan_band or ("B08" if "B08" in pan_names else pan_names[0])
    if pan_name not in pan_names:
        raise InputError(args.input, f"pan band {pan_name!r} not in {groups[fine]} (it has {pan_names})")
    pan = pan_ds["image"].sel(band=pan_name).data  # lazy (y, x)
    ms_names = [str(b) for b in ms_ds["band"].values]
    reason = pansharpen_fallback_reason(ms_names, ratio, data)
    if ms_ds["image"].rio.crs != pan_ds["image"].rio.crs:
        raise InputError(args.input, "pan and MS groups have different CRS")
    try:
        phase = grid_phase(tuple(ms_ds["image"].rio.transform())[:6], tuple(pan_ds["image"].rio.transform())[:6],
                           ratio)
    except ValueError as exc:
        raise InputError(args.input, f"pan and MS grids are not nested: {exc}") from None
    height, width = pan.shape
    pan, phase0, pads = align_pan(pan, phase, ratio, args.input)

    def crop(a: np.ndarray) -> np.ndarray:  # back onto the pan grid after a phase-aligning pad
        return a[..., pads[0]:pads[0] + height, pads[1]:pads[1] + width]

    phase = (phase0, phase0)
    coords = {"y": pan_ds["y"].values, "x": pan_ds["x"].values, "spatial_ref": pan_ds["spatial_ref"]}
    grids = {"grid_phase": phase[0], "pan_band": pan_name, "ms_group": groups[ms_i], "pan_group": groups[fine]}
    if pads != (0, 0):
        grids["pan_phase_pad"] = list(pads)
    if is_anyband(data):  # --checkpoint names the any-band prior: it serves every band set it can
        reason = "the checkpoint is the any-band prior"
    if reason is not None:
        from scorerecon.modalities.optical.anyband import infer_bands
        from scorerecon.modalities.optical.anyband import pan_range as pan_spectral_range

        files = ms_ds.attrs.get("band_files", {})
        stems = [Path(files[n]).stem for n in ms_names if n in files]
        specs = infer_bands(ms_names, stems)
        anyband = (model, str(model.checkpoint_path)) if is_anyband(data) else load_anyband(None, args.device)
        why = anyband_reason(specs, ms_names, ratio, None if anyband is None else anyband[0].card["data"])
        if why is not None:
            return _pansharpen_classical(args, ms_ds["image"], ms_names, pan, ratio, phase[0],
                                         f"{reason}; {why}", coords, grids, crop)
        pan_file = pan_ds.attrs.get("band_files", {}).get(pan_name)
        prange, prange_note = pan_spectral_range(Path(pan_file).stem if pan_file else None, stems)
        args.nfe, args.samples = getattr(args, "anyband_sampling", ANYBAND_SAMPLING)
        adapted: dict[str, Any] = {}
        fused, std, run = anyband_scene(anyband[0], anyband[0].card["data"], ms_ds["image"].data, pan, specs, ratio,
                                        phase[0], prange, nfe=args.nfe, samples=args.samples, seed=args.seed,
                                        tile=args.tile, overlap=args.overlap, batch_size=args.batch_size,
                                        device=args.device, engine=engine_config(args),
                                        adaptation=ANYBAND_ADAPTATION, record=adapted)
        fused, std = crop(fused), crop(std)
        note = f"any-band prior: {reason}; sharpened {', '.join(ms_names)} band by band with {ANYBAND_CHECKPOINT}"
        if not args.quiet:
            print(f"note: {note}")
        coords["band"] = ms_names
        out = xr.Dataset({"image": (("band", "y", "x"), fused), "std": (("band", "y", "x"), std)}, coords=coords)
        out["image"].attrs["units"] = "input MS units, sharpened to the pan grid (posterior mean, any-band prior)"
        out["std"].attrs["description"] = f"per-pixel std over {args.samples} posterior samples"
        info = {"task": "pansharpen", "ratio": ratio, **grids, "prior": "anyband", "note": note,
                "wavelengths_nm": {n: list(b.range_nm) for n, b in zip(ms_names, specs, strict=True)},
                "pan_range_nm": list(prange), "pan_range_source": prange_note, "nfe": run.nfe,
                "samples": args.samples, "nfe_total": run.nfe * args.samples, "sampler": "ddim", "eta": 0.0,
                "seed": args.seed, "tile": args.tile, "overlap": args.overlap, "tiles": run.n_tiles,
                "batches": run.n_batches, "adaptation": adapted.get("adaptation"), "_model": anyband[0]}
        return out, info
    ms = _select_bands(ms_ds, list(data["bands"]), args.input, groups[ms_i]).data  # lazy (band, y, x)
    from scorerecon.modalities.optical.bands import band_specs

    fused, std, run = pansharpen_scene(model, data, ms, pan, nfe=args.nfe, samples=args.samples, seed=args.seed,
                                       tile=args.tile, overlap=args.overlap, batch_size=args.batch_size,
                                       device=args.device, phase=phase[0], engine=engine_config(args),
                                       gains=[b.mtf_nyquist for b in band_specs(list(data["bands"]), "landsat8")],
                                       consistency_steps=PANSHARPEN_CONSISTENCY)
    fused, std = crop(fused), crop(std)
    coords["band"] = list(data["bands"])
    out = xr.Dataset({"image": (("band", "y", "x"), fused), "std": (("band", "y", "x"), std)}, coords=coords)
    out["image"].attrs["units"] = "input MS units (DN), sharpened to the pan grid (posterior mean)"
    out["std"].attrs["description"] = f"per-pixel std over {args.samples} posterior samples"
    info = {"task": "pansharpen", "ratio": ratio, "grid_phase": phase[0], "pan_band": pan_name,
            "ms_group": groups[ms_i], "pan_group": groups[fine], "nfe": run.nfe, "samples": args.samples,
            "nfe_total": run.nfe * args.samples, "sampler": "ddim",
            "eta": 0.0, "seed": args.seed, "tile": args.tile, "overlap": args.overlap, "tiles": run.n_tiles,
            "batches": run.n_batches}
    return out, info


def _pansharpen_classical(args: argparse.Namespace, ms: Any, names: list[str], pan: Any, ratio: int, phase: int,
                          reason: str, coords: dict[str, Any], grids: dict[str, Any],
                          crop: Any = lambda a: a) -> tuple[Any, dict[str, Any]]:
    """:data:`FALLBACK_METHOD` on the whole scene where the prior cannot serve, with a one-line note."""
    import xarray as xr

    from scorerecon.modalities.optical.bands import MTF_MS, MTF_PAN, band_specs
    from scorerecon.modalities.optical.baselines import PANSHARPEN_BASELINES

    try:
        gains, mtf = [b.mtf_nyquist for b in band_specs(names)], "the sensor's MTF gains"
    except KeyError:
        gains, mtf = [MTF_MS] * len(names), f"generic MTF gain {MTF_MS} (unknown sensor)"
    note = f"classical fallback: {reason}; ran {FALLBACK_METHOD} ({mtf}) instead of the diffusion prior"
    if not args.quiet:
        print(f"note: {note}")
    fused = PANSHARPEN_BASELINES[FALLBACK_METHOD](np.asarray(ms, np.float64), np.asarray(pan, np.float64), ratio,
                                                  phase, gains=gains, pan_gain=MTF_PAN)
    fused = crop(fused)
    out = xr.Dataset({"image": (("band", "y", "x"), fused.astype(np.float32))}, coords={**coords, "band": names})
    out["image"].attrs["units"] = f"input MS units, sharpened to the pan grid by {FALLBACK_METHOD}"
    info = {"task": "pansharpen", "ratio": ratio, **grids, "method": FALLBACK_METHOD, "note": note, "nfe": 0,
            "samples": 0, "nfe_total": 0, "mtf_gains": gains}
    return out, info


def _s2sr_store(args: argparse.Namespace, model: Any) -> tuple[Any, dict[str, Any]]:
    """``--task s2sr``: the store's 20 m bands sharpened onto its 10 m grid (exact CRS and transform)."""
    import xarray as xr

    from scorerecon.modalities.io.store import store_groups
    from scorerecon.modalities.optical.degradation import grid_offset

    data = model.card["data"]
    bands, guide_bands, ratio = list(data["bands"]), list(data["guide_bands"]), int(data["ratio"])
    groups = [g for g in store_groups(args.input) if g.startswith("res_")]
    sets = {g: _geo_group(args.input, g) for g in groups}
    names = {g: [str(b) for b in ds["band"].values] for g, ds in sets.items()}
    ms_group = next((g for g in groups if all(b in names[g] for b in bands)), None)
    guide_group = next((g for g in groups if all(b in names[g] for b in guide_bands)), None)
    if ms_group is None or guide_group is None:
        raise InputError(args.input, f"--task s2sr needs a store with the 20 m bands {', '.join(bands)} in one group "
                                     f"and the 10 m bands {', '.join(guide_bands)} in another (scorerecon ingest "
                                     f"s2_B*.jp2); found {names or 'no resolution groups'}")
    ms_ds, guide_ds = sets[ms_group], sets[guide_group]
    if ms_ds["image"].rio.crs != guide_ds["image"].rio.crs:
        raise InputError(args.input, f"groups {ms_group} and {guide_group} have different CRS")
    try:
        phase = grid_offset(tuple(ms_ds["image"].rio.transform())[:6], tuple(guide_ds["image"].rio.transform())[:6],
                            ratio)
    except ValueError as exc:
        raise InputError(args.input, f"the {guide_group} grid does not nest in the {ms_group} grid: {exc}") from None
    ms = _select_bands(ms_ds, bands, args.input, ms_group).data  # lazy (band, y, x)
    guide = _select_bands(guide_ds, guide_bands, args.input, guide_group).data
    from scorerecon.modalities.optical.s2_superres import mtf_gains

    # back-projection needs one grid phase for both axes (decimate has no per-axis phase yet)
    steps = PANSHARPEN_CONSISTENCY if float(phase[0]) == float(phase[1]) else 0
    if not steps and not args.quiet:
        print(f"note: back-projection skipped: the grids' row and column offsets differ {tuple(phase)}")
    fused, std, run = pansharpen_scene(model, data, ms, guide, nfe=args.nfe, samples=args.samples, seed=args.seed,
                                       tile=args.tile, overlap=args.overlap, batch_size=args.batch_size,
                                       device=args.device, phase=phase, engine=engine_config(args),
                                       gains=mtf_gains(bands), consistency_steps=steps)
    coords = {"band": bands, "y": guide_ds["y"].values, "x": guide_ds["x"].values,
              "spatial_ref": guide_ds["spatial_ref"]}
    out = xr.Dataset({"image": (("band", "y", "x"), fused), "std": (("band", "y", "x"), std)}, coords=coords)
    out["image"].attrs["units"] = "input 20 m band units (DN), sharpened to the 10 m grid (posterior mean)"
    out["std"].attrs["description"] = f"per-pixel std over {args.samples} posterior samples"
    info = {"task": "s2sr", "ratio": ratio, "grid_phase": list(phase), "back_projection_steps": steps,
            "ms_group": ms_group,
            "guide_group": guide_group, "guide_bands": guide_bands, "nfe": run.nfe, "samples": args.samples,
            "nfe_total": run.nfe * args.samples, "sampler": "ddim", "eta": 0.0, "seed": args.seed, "tile": args.tile,
            "overlap": args.overlap, "tiles": run.n_tiles, "batches": run.n_batches}
    return out, info


def _single_grid(path: Path, what: str) -> Any:
    from scorerecon.modalities.io.store import store_groups

    groups = store_groups(path)
    if len(groups) != 1:
        raise InputError(path, f"{what} store must hold one grid (all 13 bands resampled to one resolution), "
                               f"found groups {groups}")
    return _geo_group(path, groups[0])


def _cloud_store(args: argparse.Namespace, model: Any) -> tuple[Any, dict[str, Any]]:
    import xarray as xr

    from scorerecon.modalities.optical.clouds import feather, multitemporal_mask

    if args.other is None:
        raise InputError(None, "--task cloud needs --other CLEAR.zarr (another clear date of the same grid)")
    cloudy_ds = _single_grid(args.input, "cloudy")
    other_ds = _single_grid(args.other, "other-date")
    cloudy, other = cloudy_ds["image"], other_ds["image"]
    if cloudy.shape != other.shape or tuple(cloudy.rio.transform()) != tuple(other.rio.transform()) \
            or cloudy.rio.crs != other.rio.crs:
        raise InputError(args.other, "the other date is not on the cloudy scene's grid (CRS, transform, size)")
    scale = float(args.reflectance_scale)
    c = np.asarray(cloudy.data, dtype=np.float64) / scale
    o = np.asarray(other.data, dtype=np.float64) / scale
    if args.cloud_mask is not None:
        mask_ds = _single_grid(args.cloud_mask, "mask")
        mask = np.asarray(mask_ds["image"].data)[0] > 0
        if mask.shape != c.shape[-2:]:
            raise InputError(args.cloud_mask, f"mask {mask.shape} does not match the scene {c.shape[-2:]}")
        mask_source = str(args.cloud_mask)
    else:
        mask = multitemporal_mask(c, o)
        mask_source = "multi-temporal blue test (no --cloud-mask given)"
    samples = max(1, int(args.samples))
    mean, std, run = cloud_scene(model, model.card["data"], c, mask.astype(np.float32), o, nfe=args.nfe,
                                 samples=samples, seed=args.seed, tile=args.tile, overlap=args.overlap,
                                 batch_size=args.batch_size, device=args.device, engine=engine_config(args))
    observed = feather(mask, FEATHER_RADIUS) == 0  # outside the mask: the input's own values, bit for bit
    image = np.where(observed[None], np.asarray(cloudy.data), mean * scale).astype(np.float32)
    coords = {"band": cloudy["band"].values, "y": cloudy_ds["y"].values, "x": cloudy_ds["x"].values,
              "spatial_ref": cloudy_ds["spatial_ref"]}
    out = xr.Dataset({"image": (("band", "y", "x"), image),
                      "std": (("band", "y", "x"), (std * scale).astype(np.float32)),
                      "cloud_mask": (("y", "x"), mask.astype(np.uint8))}, coords=coords)
    out["image"].attrs["description"] = (f"outside the cloud mask the input; inside, the mean of {samples} posterior "
                                         f"samples, blended into the input over {FEATHER_RADIUS:g} px")
    out["std"].attrs["description"] = f"per-pixel std over {samples} posterior samples (x the blend weight)"
    calibration = load_calibration(model.checkpoint_path)
    settings = cloud_settings(samples, args.nfe)
    interval = "none: the checkpoint has no interval calibration"
    if calibration is not None:
        off = calibration.mismatches(**settings)
        if off:
            interval = f"none: the calibration does not apply to {', '.join(off)}"
        else:
            out["interval90"] = (("band", "y", "x"), (calibration.half_width(std, mask) * scale).astype(np.float32))
            out["interval90"].attrs["description"] = (
                f"half-width of the split-conformal {calibration.level:.0%} interval image +- interval90 "
                f"({calibration.source})")
            interval = "interval90 (split conformal, calibrated on the training area)"
    info = {"task": "cloud", "samples": samples, "nfe": run.nfe, "sampler": "ddim", "eta": 1.0, "seed": args.seed,
            "tile": args.tile, "overlap": args.overlap, "mask": mask_source, "other_date": str(args.other),
            "reflectance_scale": scale, "cloud_fraction": float(mask.mean()), "feather_radius": FEATHER_RADIUS,
            "interval": interval}
    return out, info


def cloud_settings(samples: int, nfe: int, eta: float = 1.0) -> dict[str, Any]:
    """The sampling an interval calibration is tied to (see :class:`~.conformal.IntervalCalibration`)."""
    return {"samples": int(samples), "nfe": int(nfe), "eta": float(eta), "feather_radius": FEATHER_RADIUS}


def load_calibration(checkpoint: str | Path) -> Any:
    """The checkpoint's :class:`~scorerecon.modalities.optical.conformal.IntervalCalibration`, or ``None``."""
    from scorerecon.modalities.optical.conformal import IntervalCalibration
    from scorerecon.models.checkpoint import resolve_checkpoint

    root = resolve_checkpoint(checkpoint)  # a name or path, found from any folder
    path = (root if root.is_dir() else root.parent) / CALIBRATION_FILE
    return IntervalCalibration.load(path) if path.exists() else None


def run_remote(args: argparse.Namespace) -> int:
    """``scorerecon reconstruct --task pansharpen|s2sr|cloud`` (the registry's entry for all three, called by
    reconstruct)."""
    from scorerecon.modalities.io.store import open_store, write_store
    from scorerecon.pipelines.record import finish_output

    if args.threads:
        torch.set_num_threads(args.threads)
    defaults = DEFAULT_SAMPLING[args.task]
    # the any-band prior has its own defaults (pan-sharpening decides which prior serves the bands later)
    args.anyband_sampling = tuple(d if v is None else int(v) for d, v in zip(ANYBAND_SAMPLING, (args.nfe, args.samples),
                                                                             strict=True))
    args.nfe = defaults[0] if args.nfe is None else int(args.nfe)
    args.samples = defaults[1] if args.samples is None else int(args.samples)
    if args.nfe < 1 or args.samples < 1:
        raise InputError(None, "--nfe and --samples must be >= 1")
    if not 0.0 <= args.overlap < 1.0:
        raise InputError(None, f"--overlap must be in [0, 1), got {args.overlap}")
    from scorerecon.modalities.io.outputs import check_output

    check_output(args.output, "dir", args.overwrite, protect=[args.input])  # before the model is loaded
    open_store(args.input)  # a missing or incomplete store fails before the model is loaded
    model, checkpoint = load_task_model(args.task, args.checkpoint, args.device)
    start = time.perf_counter()
    with torch.no_grad():
        out, info = {"pansharpen": _pansharpen_store, "s2sr": _s2sr_store}.get(args.task, _cloud_store)(args, model)
    model = info.pop("_model", model)  # pan-sharpening may have run the any-band prior instead
    seconds = time.perf_counter() - start
    if args.task == "pansharpen":
        inputs = [(args.input, info["pan_group"]), (args.input, info["ms_group"])]
    elif args.task == "s2sr":
        inputs = [(args.input, info["guide_group"]), (args.input, info["ms_group"])]
    else:
        inputs = [(p, _first_group(p)) for p in (args.input, args.other, args.cloud_mask) if p is not None]
    out = out.chunk({"band": 1, "y": 512, "x": 512}) if "band" in out.dims else out
    out = finish_output(out, task=args.task, args=args, model=model, checkpoint=model.checkpoint_path, inputs=inputs,
                        info=info, seconds=seconds, reader="scorerecon.pipelines.reconstruct_remote")
    out.attrs["resolution"] = [abs(float(v)) for v in out["image"].rio.resolution()]
    write_store(out, args.output, overwrite=args.overwrite)
    if not args.quiet:
        print(f"wrote {args.output}: {args.task}, {out['image'].shape[0]} bands x {out['image'].shape[1]} x "
              f"{out['image'].shape[2]}, {info['samples']} sample(s) x {info['nfe']} NFE, {seconds:.1f} s")
    return 0


def _first_group(path: Path) -> str:
    from scorerecon.modalities.io.store import store_groups

    return store_groups(path)[0]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The pan-sharpening / cloud-removal options of ``scorerecon reconstruct``."""
    group = parser.add_argument_group("remote sensing (pansharpen, cloud)")
    group.add_argument("--tile", type=int, default=128, help="tile edge in output pixels (multiple of 4; default 128)")
    group.add_argument("--overlap", type=float, default=0.25, help="tile overlap fraction (default 0.25)")
    group.add_argument("--pan-band", default=None, help="pansharpen: pan band name (default B08)")
    group.add_argument("--other", type=Path, default=None, help="cloud: store of another clear date, same grid")
    group.add_argument("--cloud-mask", type=Path, default=None, help="cloud: store with a cloud mask band")
    group.add_argument("--reflectance-scale", type=float, default=1.0,
                       help="cloud: divide store values by this to get reflectance (10000 for L1C DN)")
