"""The batched tile engine: every tile of every input through one sampler call per batch.

Reconstruction cost is network evaluations; the engine's job is to keep the device busy with
them and to make everything around them nearly free:

1. **Tiles** come from :class:`~scorerecon.pipelines.tiling.TileGrid` s (one per input: 2D
   slices or patches, 3D slabs, raster patches). Tiles of the same network shape, from any
   number of inputs, share batches.
2. **Batch size** comes from :func:`plan_batch`: on CUDA, free memory (``torch.cuda.mem_get_info``)
   divided by a per-sample cost measured with one probe forward (activations) plus the
   sampler's own state; a fixed default on CPU and MPS. ``EngineConfig.batch_size`` overrides.
3. **Reading** runs one batch ahead in a background thread (``EngineConfig.prefetch``): while the
   device samples batch ``k``, the thread calls the task's ``read(tile)`` for batch ``k + 1``
   (typically a Zarr region through xarray/dask, which releases the GIL while decompressing),
   stacks the per-tile tensors and pins them (CUDA); the main thread then copies them with
   ``non_blocking=True``.
4. **Sampling** is ONE :func:`~scorerecon.models.samplers.sample` call per batch, so all tiles
   share the sampler's steps. Per-tile measurements and operator parameters are stacked by the
   engine into :attr:`TileBatch.data`; the task's ``make_guidance(batch)`` builds one *batched*
   :class:`~scorerecon.models.guidance.Guidance` from them (e.g. ``CartesianMRI(batch.data["mask"])``
   with a ``(B, 1, H, W)`` mask and ``MeasurementProjection(op, batch.data["y"])``). Data
   consistency therefore runs on the device, batched, in fp32.
5. **Seeds are per tile**, not per batch: tile ``t`` of input ``s`` gets
   :func:`tile_seed` ``(seed, s, t.index)`` and its own random stream
   (:class:`~scorerecon.models.rng.SampleGenerators`), so a tile's result does not depend on the
   batch size, its batch mates or its position -- the same run batched 1, 4 or 64 at a time
   gives the same tiles (to float rounding of batched kernels). Samplers with batch coupling
   break this: the engine runs ``pc``'s Langevin corrector with ``norm="sample"`` unless told
   otherwise.
6. **Network speed**: bf16 autocast + TF32 + SDPA attention on CUDA (:mod:`.device`), optional
   ``torch.compile`` (``"max-autotune-no-cudagraphs"``, or ``"reduce-overhead"`` for CUDA graphs:
   shapes are then kept fixed by padding the last batch). Inductor's cache lives in
   ``TORCHINDUCTOR_CACHE_DIR`` (default ``~/.cache/scorerecon/inductor``), so a second run starts
   warm.
7. **Writing**: outputs go back through each grid's Gaussian :class:`~.tiling.Stitcher` in a
   writer thread; an input's ``on_complete(source, array, grid)`` fires as soon as its last tile
   is in, so memory is released input by input.
8. **Fused tiles** (``run(..., fuse=True)``, :mod:`.multidiffusion`): instead of sampling tiles
   independently and blending finished tiles -- which averages independent samples where tiles
   overlap and deflates the posterior spread there -- each input is one global state whose
   overlapping tiles are fused at every denoising step (MultiDiffusion); tiles are still batched
   by the plan, and the finished image goes through the same stitcher path.

Several GPUs: run one engine per GPU in separate processes (one Snakemake job or dask worker per
GPU, each with its own ``CUDA_VISIBLE_DEVICES``); the engine itself is single-device by design.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from scorerecon.models.guidance import Guidance
from scorerecon.models.rng import SampleGenerators, derive_seed
from scorerecon.models.samplers import sample
from scorerecon.models.score_model import NetworkScoreModel, ScoreModel
from scorerecon.pipelines.device import (
    Precision,
    configure_backends,
    precision_policy,
    resolve_device,
    set_flash_attention,
)
from scorerecon.pipelines.tiling import Stitcher, Tile, TileGrid

Tensor = torch.Tensor

__all__ = [
    "COMPILE_MODES",
    "BatchPlan",
    "EngineConfig",
    "EngineNetwork",
    "EngineResult",
    "TileBatch",
    "TileEngine",
    "TileItem",
    "plan_batch",
    "tile_seed",
]

#: accepted ``EngineConfig.compile`` values (``None``: eager)
COMPILE_MODES = ("default", "max-autotune", "max-autotune-no-cudagraphs", "reduce-overhead")
#: samplers whose Langevin corrector normalises over the batch unless ``norm="sample"``
_CORRECTOR_SAMPLERS = ("pc", "ncsn", "annealed_langevin")


def tile_seed(seed: int, source: str, index: int) -> int:
    """A tile's own seed: a stable 63-bit hash of (run seed, input name, tile index).

    :func:`~scorerecon.models.rng.derive_seed`, the same naming of streams the tasks use per slice.
    """
    return derive_seed(int(seed), source, int(index))


# --------------------------------------------------------------------------------------------
# what a task hands in, and what its callbacks see
# --------------------------------------------------------------------------------------------
@dataclass
class TileItem:
    """One tile's inputs, as a task's ``read(tile)`` returns them (host tensors).

    ``cond``: conditioning channels ``(C_cond, *spatial)`` concatenated to the network input;
    ``data``: per-tile measurements / operator parameters (a mask, a sinogram, k-space ...), each
    stacked by the engine along a new batch dim -- all tiles of a batch need the same keys and
    shapes; ``meta``: anything else, passed through unstacked; ``seed``: overrides
    :func:`tile_seed`.
    """

    tile: Tile
    cond: Tensor | None = None
    data: dict[str, Tensor] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None


@dataclass
class TileBatch:
    """A batch on the device: what ``make_guidance`` and ``postprocess`` see.

    Rows ``n_real`` onwards (if any) are padding that keeps a compiled shape fixed; they repeat
    the last real tile and are discarded.
    """

    items: list[TileItem]
    seeds: list[int]
    cond: Tensor | None
    data: dict[str, Tensor]
    n_real: int
    device: torch.device

    @property
    def size(self) -> int:
        return len(self.seeds)


TileReader = Callable[[Tile], TileItem]
GuidanceFactory = Callable[[TileBatch], Guidance | None]
Postprocess = Callable[[TileBatch, Tensor], Tensor]
OnComplete = Callable[[str, Tensor, TileGrid], None]


@dataclass
class EngineConfig:
    """Engine options; the defaults pick the fastest safe setting for the device found.

    ``compile``: ``None`` (eager) or one of :data:`COMPILE_MODES`; ``batch_size``: ``None`` asks
    :func:`plan_batch`; ``fixed_shape``: pad the last batch to ``batch_size`` (default: on when
    compiling, so no recompilation / CUDA-graph re-capture); ``noise_device``: draw the tiles'
    noise there (``"cpu"`` makes the same seed give the same noise on every device);
    ``time_network``: time every network call in place (synchronised) for
    :attr:`EngineResult.network_seconds` -- benchmarks only, it adds a sync per call.
    """

    device: str | torch.device = "auto"
    precision: str = "auto"
    compile: str | None = None
    batch_size: int | None = None
    max_batch: int = 256
    cpu_batch: int = 4
    memory_fraction: float = 0.85
    prefetch: int = 1
    fixed_shape: bool | None = None
    pin_memory: bool | None = None
    noise_device: str | None = None
    seed: int = 0
    time_network: bool = False


@dataclass
class BatchPlan:
    """How many tiles per batch, and why."""

    batch_size: int
    reason: str  # "fixed" | "cpu default" | "mps default" | "probe"
    per_sample_bytes: int | None = None
    free_bytes: int | None = None


@dataclass
class EngineResult:
    """Stitched outputs per input (unless ``on_complete`` took them) and where the time went."""

    outputs: dict[str, Tensor]
    tiles: dict[tuple[str, int], Tensor] | None
    n_tiles: int
    n_batches: int
    batch_size: int
    nfe: int  # network evaluations per batch (the sampler's count)
    nfe_tiles: int  # sum over batches of real tiles x NFE
    seconds: float  # wall time of the whole run, reading and writing included
    sample_seconds: float  # inside sample() calls
    read_wait_seconds: float  # main thread waiting for the prefetch thread
    plan: BatchPlan | None = None
    network_seconds: float | None = None  # summed in-place network time (``time_network``)

    @property
    def nfe_tiles_per_second(self) -> float:
        return self.nfe_tiles / self.seconds if self.seconds > 0 else float("nan")


# --------------------------------------------------------------------------------------------
# the network as the engine runs it
# --------------------------------------------------------------------------------------------
def _default_inductor_cache() -> None:
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(Path.home() / ".cache" / "scorerecon" / "inductor"))


class EngineNetwork(nn.Module):
    """A score network under the device's precision policy, optionally compiled.

    Only the network is autocast (bf16 on CUDA); its output comes back as fp32 so that the
    sampler update and data consistency stay in fp32. ``compile`` wraps the autocast call in
    ``torch.compile(dynamic=False)``; with ``"reduce-overhead"`` (CUDA graphs) every call starts
    a new graph step and the output is cloned out of the graph's memory pool, because samplers
    keep the previous prediction while calling again.
    """

    def __init__(self, network: nn.Module, policy: Precision, compile: str | None = None,
                 timed: bool = False) -> None:
        super().__init__()
        self.timed, self.seconds, self.calls = timed, 0.0, 0
        if compile is not None and compile not in COMPILE_MODES:
            raise ValueError(f"compile must be None or one of {COMPILE_MODES}, got {compile!r}")
        self.network, self.policy, self.compile_mode = network, policy, compile
        self._cudagraphs = compile == "reduce-overhead" and policy.device.type == "cuda"
        self._fn: Callable[[Tensor, Tensor], Tensor] = self._eager
        if compile is not None:
            _default_inductor_cache()
            self._fn = torch.compile(self._eager, mode=compile, dynamic=False)

    def _eager(self, x: Tensor, t: Tensor) -> Tensor:
        with self.policy.autocast():
            return self.network(x, t)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        if self.timed:
            _sync(x.device)
            start = time.perf_counter()
        if self._cudagraphs:
            torch.compiler.cudagraph_mark_step_begin()
        out = self._fn(x, t).to(x.dtype)
        out = out.clone() if self._cudagraphs else out
        if self.timed:
            _sync(x.device)
            self.seconds += time.perf_counter() - start
            self.calls += 1
        return out


def _prepare_model(model: ScoreModel, device: torch.device, policy: Precision, compile: str | None,
                   timed: bool = False) -> ScoreModel:
    if isinstance(model, NetworkScoreModel):
        network = model.network.to(device).eval()
        if policy.flash_attention:
            set_flash_attention(network, True)
        wrapped = NetworkScoreModel(EngineNetwork(network, policy, compile, timed), model.sde, model.parametrization)
        if hasattr(model, "card"):
            wrapped.card = model.card
        return wrapped.eval()
    if compile is not None:
        raise ValueError("compile needs a NetworkScoreModel (a network to compile)")
    if isinstance(model, nn.Module):
        model.to(device)
    return model


# --------------------------------------------------------------------------------------------
# memory planner
# --------------------------------------------------------------------------------------------
def plan_batch(model: ScoreModel, sample_shape: Sequence[int], device: torch.device | str, *,
               cond_channels: int = 0, n_tiles: int | None = None, max_batch: int = 256, cpu_batch: int = 4,
               memory_fraction: float = 0.85, probe_batch: int = 2, state_copies: int = 24,
               grad: bool = False) -> BatchPlan:
    """Tiles per batch for ``model`` on ``device`` at tile shape ``sample_shape`` ``(C, *spatial)``.

    CUDA: ``memory_fraction * free / per_sample`` where ``per_sample`` is the peak memory of one
    probe forward of ``probe_batch`` tiles (activations; under the model's autocast) divided by
    ``probe_batch``, plus ``state_copies`` fp32 copies of a tile for the sampler state, noise,
    predictions and data-consistency temporaries. Rounded down to a multiple of 8 (tensor-core
    friendly) when at least 8, clipped to ``[1, max_batch]`` and to ``n_tiles``. ``grad`` probes
    with a backward pass (DPS-style guidance). CPU: ``cpu_batch``; MPS: 8 (no free-memory query
    worth trusting). The first call also pays cuDNN autotuning; it is not timed anywhere.
    """
    device = resolve_device(device) if isinstance(device, str) else device
    cap = max_batch if n_tiles is None else max(1, min(max_batch, n_tiles))
    if device.type != "cuda":
        batch = cpu_batch if device.type == "cpu" else 8
        return BatchPlan(max(1, min(batch, cap)), f"{device.type} default")
    sample_shape = tuple(int(s) for s in sample_shape)
    tile_bytes = 4 * math.prod(sample_shape)
    torch.cuda.synchronize(device)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    x = torch.randn((probe_batch, *sample_shape), device=device)
    t = torch.full((probe_batch,), 0.5, device=device)
    cond = torch.zeros((probe_batch, cond_channels, *sample_shape[1:]), device=device) if cond_channels else None
    if grad:
        with torch.enable_grad():
            x.requires_grad_(True)
            model.predict(x, t, cond).x0.square().sum().backward()
    else:
        with torch.no_grad():
            model.predict(x, t, cond)
    torch.cuda.synchronize(device)
    peak = torch.cuda.max_memory_allocated(device) - base
    del x, t, cond
    torch.cuda.empty_cache()
    free, _ = torch.cuda.mem_get_info(device)
    per_sample = int(peak / probe_batch + state_copies * tile_bytes * (1 + cond_channels / sample_shape[0]))
    batch = int(memory_fraction * free // max(per_sample, 1))
    if batch >= 8:
        batch -= batch % 8
    return BatchPlan(max(1, min(batch, cap)), "probe", per_sample, int(free))


# --------------------------------------------------------------------------------------------
# the engine
# --------------------------------------------------------------------------------------------
@dataclass
class _HostBatch:
    items: list[TileItem]
    seeds: list[int]
    cond: Tensor | None
    data: dict[str, Tensor]
    n_real: int


class _Collector:
    """Tile outputs -> each input's :class:`Stitcher`; a finished input goes to ``on_complete`` or ``outputs``."""

    def __init__(self, by_source: Mapping[str, TileGrid], on_complete: OnComplete | None, keep_tiles: bool) -> None:
        self.by_source, self.on_complete = by_source, on_complete
        self.stitchers: dict[str, Stitcher] = {}
        self.outputs: dict[str, Tensor] = {}
        self.kept: dict[tuple[str, int], Tensor] | None = {} if keep_tiles else None

    def add(self, items: list[TileItem], values: Tensor) -> None:
        for item, v in zip(items, values, strict=True):
            tile = item.tile
            grid = self.by_source[tile.source]
            st = self.stitchers.get(tile.source)
            if st is None:
                st = self.stitchers[tile.source] = grid.stitcher(v.shape[0])
            st.add(tile, v)
            if self.kept is not None:
                self.kept[(tile.source, tile.index)] = v.clone()
            if st.complete:
                result = st.result()
                del self.stitchers[tile.source]
                if self.on_complete is not None:
                    self.on_complete(tile.source, result, grid)
                else:
                    self.outputs[tile.source] = result


def _stack(tensors: list[Tensor], what: str) -> Tensor:
    shapes = {tuple(t.shape) for t in tensors}
    if len(shapes) != 1:
        raise ValueError(f"tiles of one batch disagree on the shape of {what}: {sorted(shapes)}")
    return torch.stack(tensors)


class TileEngine:
    """Runs a score model over tiles in batches; see the module doc for the pipeline.

    ``model`` is any :class:`~scorerecon.models.score_model.ScoreModel`; a
    :class:`~scorerecon.models.score_model.NetworkScoreModel` (what
    :func:`~scorerecon.models.checkpoint.load_score_model` returns) is moved to the device (in
    place) and run under the device's precision policy, compiled if asked.
    """

    def __init__(self, model: ScoreModel, config: EngineConfig | None = None) -> None:
        self.config = config or EngineConfig()
        cfg = self.config
        self.device = resolve_device(cfg.device)
        self.policy = precision_policy(self.device, cfg.precision)
        configure_backends(self.policy)
        self.model = _prepare_model(model, self.device, self.policy, cfg.compile, cfg.time_network)
        self.fixed_shape = cfg.compile is not None if cfg.fixed_shape is None else cfg.fixed_shape
        self.pin = self.device.type == "cuda" if cfg.pin_memory is None else cfg.pin_memory
        self._plans: dict[tuple, BatchPlan] = {}

    # -- planning ---------------------------------------------------------------------------
    def cond_channels(self, data_channels: int) -> int:
        """Conditioning channels the network expects besides ``data_channels`` (0 if unknown)."""
        net = getattr(self.model, "network", None)
        while net is not None and not hasattr(net, "in_channels"):  # through EngineNetwork
            net = getattr(net, "network", None)
        in_channels = getattr(net, "in_channels", None)
        return max(0, int(in_channels) - int(data_channels)) if in_channels is not None else 0

    def plan(self, sample_shape: Sequence[int], n_tiles: int | None = None, grad: bool = False) -> BatchPlan:
        """The batch plan for a tile shape (probed once per shape); ``config.batch_size`` wins.

        Never more than ``n_tiles``: a run with few tiles uses one exact-size batch.
        """
        cfg = self.config
        if cfg.batch_size is not None:
            plan = BatchPlan(max(1, int(cfg.batch_size)), "fixed")
        else:
            key = (tuple(sample_shape), grad)
            if key not in self._plans:
                self._plans[key] = plan_batch(self.model, sample_shape, self.device,
                                              cond_channels=self.cond_channels(sample_shape[0]),
                                              max_batch=cfg.max_batch, cpu_batch=cfg.cpu_batch,
                                              memory_fraction=cfg.memory_fraction, grad=grad)
            plan = self._plans[key]
        if n_tiles is not None and plan.batch_size > n_tiles:
            plan = BatchPlan(max(1, n_tiles), plan.reason, plan.per_sample_bytes, plan.free_bytes)
        return plan

    # -- reading (runs in the prefetch thread) ----------------------------------------------
    def _load(self, tiles: list[Tile], read: TileReader, batch_size: int) -> _HostBatch:
        items = [read(tile) for tile in tiles]
        for item, tile in zip(items, tiles, strict=True):
            if item.tile != tile:
                raise ValueError(f"read({tile}) returned an item for another tile ({item.tile})")
        seeds = [tile_seed(self.config.seed, it.tile.source, it.tile.index) if it.seed is None else int(it.seed)
                 for it in items]
        n_real = len(items)
        rows = list(range(n_real)) + [n_real - 1] * (batch_size - n_real if self.fixed_shape else 0)
        conds = [items[i].cond for i in rows]
        if any(c is None for c in conds) and any(c is not None for c in conds):
            raise ValueError("some tiles of a batch have conditioning and some do not")
        cond = None if conds[0] is None else _stack([c.float() for c in conds], "cond")
        keys = set(items[0].data)
        if any(set(it.data) != keys for it in items):
            raise ValueError("tiles of one batch carry different data keys")
        data = {k: _stack([items[i].data[k] for i in rows], f"data[{k!r}]") for k in sorted(keys)}
        if self.pin:
            cond = None if cond is None else cond.pin_memory()
            data = {k: v.pin_memory() for k, v in data.items()}
        return _HostBatch(items, seeds + [seeds[-1]] * (len(rows) - n_real), cond, data, n_real)

    def _to_device(self, hb: _HostBatch) -> TileBatch:
        dev = self.device
        cond = None if hb.cond is None else hb.cond.to(dev, non_blocking=True)
        data = {k: v.to(dev, non_blocking=True) for k, v in hb.data.items()}
        return TileBatch(hb.items, hb.seeds, cond, data, hb.n_real, dev)

    # -- the run ------------------------------------------------------------------------------
    def run(self, grids: Sequence[TileGrid] | Mapping[str, TileGrid], read: TileReader, *, sampler: str = "ddim",
            nfe: int = 50, make_guidance: GuidanceFactory | None = None, postprocess: Postprocess | None = None,
            channels: int | None = None, on_complete: OnComplete | None = None, keep_tiles: bool = False,
            guidance_grad: bool = False, fuse: bool = False, **sampler_options: Any) -> EngineResult:
        """Sample every tile of ``grids`` and stitch the results; see the module doc.

        ``read(tile) -> TileItem`` reads one tile's inputs (called in the prefetch thread);
        ``make_guidance(batch)`` returns a batched guidance (or ``None``); ``postprocess(batch,
        x)`` maps the sampler's output ``(B, C, ...)`` to what is stitched (e.g. complex ->
        magnitude); ``channels`` the network's data channels (default: the grid's). Inputs are
        stitched by their grid and handed to ``on_complete(source, array, grid)`` when their last
        tile is in (then not kept in :attr:`EngineResult.outputs`). ``keep_tiles`` also returns
        every tile's output. ``guidance_grad`` tells the memory planner that the guidance
        back-propagates through the network (DPS). Extra keyword arguments go to :func:`sample`.

        ``fuse`` samples each input as one image whose overlapping tiles are fused at every
        denoising step (MultiDiffusion, :mod:`.multidiffusion`): one coherent posterior sample
        per input and no overlap pattern in the spread across samples; the tiles are still
        batched by the memory plan. It takes no per-tile ``make_guidance``.
        """
        start = time.perf_counter()
        grid_list = list(grids.values()) if isinstance(grids, Mapping) else list(grids)
        by_source = {g.source: g for g in grid_list}
        if len(by_source) != len(grid_list):
            raise ValueError("every grid needs its own source name")
        options = dict(sampler_options)
        if sampler in _CORRECTOR_SAMPLERS and options.setdefault("norm", "sample") == "batch":
            warnings.warn("norm='batch' couples the tiles of a batch: results depend on the batch size",
                          stacklevel=2)
        collector = _Collector(by_source, on_complete, keep_tiles)
        if fuse:
            if make_guidance is not None:
                raise ValueError("fuse=True samples whole images: per-tile guidance (make_guidance) is undefined there")
            from scorerecon.pipelines.multidiffusion import run_fused

            res = run_fused(self, grid_list, read, sampler=sampler, nfe=nfe, postprocess=postprocess,
                            channels=channels, collect=collector.add, options=options)
            res.outputs, res.tiles = collector.outputs, collector.kept
            return res
        # group tiles by the shape the network sees; batches never mix shapes
        groups: dict[tuple, list[Tile]] = {}
        for g in grid_list:
            shape = ((g.channels if channels is None else channels), *g.tiles[0].spatial_shape)
            groups.setdefault(shape, []).extend(g.tiles)
        work: list[tuple[tuple, list[Tile], int]] = []
        plan = None
        for shape, tiles in groups.items():
            plan = self.plan(shape, len(tiles), grad=guidance_grad)
            b = plan.batch_size
            work += [(shape, tiles[i:i + b], b) for i in range(0, len(tiles), b)]

        consume = collector.add  # runs in the writer thread
        timer = getattr(self.model, "network", None)
        if isinstance(timer, EngineNetwork):
            timer.seconds, timer.calls = 0.0, 0
        n_tiles = sum(len(t) for _, t, _ in work)
        nfe_used, nfe_tiles, sample_s, wait_s = 0, 0, 0.0, 0.0
        depth = max(1, int(self.config.prefetch))
        with ThreadPoolExecutor(1, thread_name_prefix="tile-reader") as reader, \
                ThreadPoolExecutor(1, thread_name_prefix="tile-writer") as writer:
            pending: deque[Future[_HostBatch]] = deque()
            writes: list[Future[None]] = []
            next_k = 0

            def submit() -> None:
                nonlocal next_k
                if next_k < len(work):
                    _, tiles, b = work[next_k]
                    pending.append(reader.submit(self._load, tiles, read, b))
                    next_k += 1

            for _ in range(depth + 1):
                submit()
            for k in range(len(work)):
                shape = work[k][0]
                t0 = time.perf_counter()
                hb = pending.popleft().result()
                wait_s += time.perf_counter() - t0
                submit()  # keep `depth` batches in flight while this one samples
                batch = self._to_device(hb)
                guidance = make_guidance(batch) if make_guidance is not None else None
                gens = SampleGenerators(batch.seeds, self.device, self.config.noise_device)
                res = sample(self.model, (batch.size, *shape), sampler, nfe=nfe, seed=gens, device=self.device,
                             guidance=guidance, cond=batch.cond, **options)
                sample_s += res.seconds
                nfe_used = res.nfe
                nfe_tiles += res.nfe * batch.n_real
                x = res.x if postprocess is None else postprocess(batch, res.x)
                values = x[:batch.n_real].detach().to("cpu")
                writes.append(writer.submit(consume, batch.items, values))
            for f in writes:
                f.result()
        net_s = timer.seconds if isinstance(timer, EngineNetwork) and timer.timed else None
        return EngineResult(collector.outputs, collector.kept, n_tiles, len(work),
                            max((b for _, _, b in work), default=0), nfe_used, nfe_tiles,
                            time.perf_counter() - start, sample_s, wait_s, plan, net_s)

    # -- bare network (benchmarks) ------------------------------------------------------------
    def forward_seconds(self, sample_shape: Sequence[int], batch: int, repeats: int = 5, warmup: int = 2,
                        cond_channels: int = 0) -> float:
        """Median wall time of one bare network evaluation (``model.predict``) on ``batch`` tiles."""
        dev = self.device
        x = torch.randn((batch, *sample_shape), device=dev)
        t = torch.full((batch,), 0.5, device=dev)
        cond = torch.randn((batch, cond_channels, *sample_shape[1:]), device=dev) if cond_channels else None
        times = []
        with torch.no_grad():
            for i in range(warmup + repeats):
                _sync(dev)
                t0 = time.perf_counter()
                self.model.predict(x, t, cond)
                _sync(dev)
                if i >= warmup:
                    times.append(time.perf_counter() - t0)
        times.sort()
        return times[len(times) // 2]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()

