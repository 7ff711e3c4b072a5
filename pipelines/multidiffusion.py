"""Seam-free tiled sampling: overlapping tiles fused at every denoising step (MultiDiffusion).

Sampling every tile independently and blending the finished tiles (the engine's default path)
gives each tile its own posterior sample; where tiles overlap the blend *averages* two
independent samples, so the per-pixel spread across posterior samples shrinks there (by up to
``1/sqrt(2)`` with two equal weights) and an uncertainty map shows the tile grid. MultiDiffusion
(Bar-Tal, Yariv, Lipman & Dekel, ICML 2023, Eq. 3-5) instead keeps **one global state** per
image: at every step each tile's update is computed from the tile's window of the global state,
and the new global state is the per-pixel weighted average of the tiles' updates; each tile is
re-read from it before the next step. Every posterior sample is then one coherent image, drawn
with one per-pixel noise field.

Implementation: :class:`FusedTileModel` is a :class:`~scorerecon.models.score_model.ScoreModel`
over whole images. Its ``predict(x, t)`` cuts the global state ``x`` ``(images, C, *spatial)``
into every tile of every image, runs the network on them in batches of the memory planner's size
(the tiles' conditioning and data were read once and stay stacked per batch), and returns the
per-pixel weighted average (the grids' Gaussian blending weights) of the tiles' network
outputs as one global :class:`~scorerecon.models.parametrization.Prediction`. Every sampler
then steps the global state unchanged, drawing its noise once per step for the whole image.
Averaging the *prediction* is the same as averaging the tiles' *updates*: every predictor here
(DDIM, DDPM, reverse diffusion, Euler-Maruyama, the ODE solvers) is affine in the network output
with coefficients that depend on ``t`` only, and the tiles share the state and the noise, so
``sum_i w_i (a x + b o_i + c z) / sum_i w_i = a x + b (sum_i w_i o_i / sum_i w_i) + c z``
exactly. (The Langevin corrector's step size depends on the score's norm; fused, it is the norm
of the fused score of the image.)

Seeds: image ``s`` draws its noise from one stream seeded :func:`~scorerecon.pipelines.engine.tile_seed`
``(seed, s, 0)`` -- the stream its tile 0 has on the independent path, so an image of one tile
samples the same either way -- and the noise does not depend on how tiles are batched.
Guidance that acts per tile (data consistency with per-tile operators) is not defined on the
fused state and is refused; the remote-sensing tasks condition through ``cond`` and need none.

Memory: the global state (a few copies of ``images x C x *spatial`` on the device) plus the
stacked conditioning of every tile (read once, kept on the device) plus one batch of network
activations, whose size the planner chooses as on the independent path.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import torch

from scorerecon.models.parametrization import Prediction
from scorerecon.models.rng import SampleGenerators
from scorerecon.models.samplers import sample
from scorerecon.models.score_model import ScoreModel
from scorerecon.pipelines.tiling import Tile, TileGrid

if TYPE_CHECKING:
    from scorerecon.pipelines.engine import EngineResult, TileBatch, TileEngine

Tensor = torch.Tensor

__all__ = ["FusedTileModel", "run_fused"]


def _region(tile: Tile) -> tuple[slice, ...]:
    return (slice(None), *tile.slices)


def _unsqueeze(values: Tensor, tile: Tile) -> Tensor:
    """``(C, *spatial_shape)`` -> ``(C, *tile.size)``: squeezed dims put back."""
    for d in sorted(tile.squeeze):
        values = values.unsqueeze(1 + d)
    return values


class FusedTileModel:
    """Whole images seen through their overlapping tiles; see the module doc.

    ``grids``: one grid per image (row ``i`` of the state is ``grids[i]``'s image; all share
    ``(C, *spatial)`` and the tile shape); ``batches``: the tiles of all images in network
    batches, each a :class:`~scorerecon.pipelines.engine.TileBatch` on the device (its rows past
    ``n_real`` pad a fixed compiled shape and are dropped).
    """

    def __init__(self, model: ScoreModel, grids: Sequence[TileGrid], batches: Sequence[TileBatch]) -> None:
        self.model, self.sde = model, model.sde
        self.grids, self.batches = list(grids), list(batches)
        self.row = {g.source: i for i, g in enumerate(self.grids)}
        self._norm: dict[tuple[str, torch.dtype], Tensor] = {}

    def tiles_of(self, x: Tensor, batch: TileBatch) -> Tensor:
        """The batch's tiles cut from the global state ``x`` (padding rows repeat the last tile)."""
        tiles = [self.grids[self.row[it.tile.source]].extract(x[self.row[it.tile.source]], it.tile)
                 for it in batch.items]
        tiles += [tiles[-1]] * (batch.size - batch.n_real)
        return torch.stack(tiles)

    def normaliser(self, device: torch.device, dtype: torch.dtype) -> Tensor:
        """``1 / sum_i w_i`` per pixel and image, ``(images, 1, *spatial)``."""
        key = (str(device), dtype)
        if key not in self._norm:
            self._norm[key] = torch.stack([g.weight_sum(device, dtype) for g in self.grids]).reciprocal()
        return self._norm[key]

    def predict(self, x: Tensor, t: Tensor, cond: Tensor | None = None) -> Prediction:
        """The fused prediction for the global state ``x`` at ``t`` (``cond`` is the tiles' own, read once)."""
        if cond is not None:
            raise ValueError("the fused tile model conditions each tile on its own data; pass cond=None")
        t = t.to(x.dtype).expand(x.shape[0]) if t.ndim == 0 else t.to(x.dtype)
        numerator = torch.zeros_like(x)
        kind = None
        for batch in self.batches:
            rows = [self.row[it.tile.source] for it in batch.items]
            rows += [rows[-1]] * (batch.size - batch.n_real)
            pred = self.model.predict(self.tiles_of(x, batch), t[rows], batch.cond)
            kind = pred.kind
            for k, item in enumerate(batch.items):
                tile, r = item.tile, rows[k]
                w = self.grids[r].weight(tile, x.device, x.dtype)
                numerator[r][_region(tile)] += _unsqueeze(pred.output[k], tile) * w
        fused = numerator * self.normaliser(x.device, x.dtype)
        return Prediction(kind, fused, x, self.sde.alpha(t), self.sde.sigma(t))


def run_fused(engine: TileEngine, grids: Sequence[TileGrid], read: Callable[[Tile], Any], *, sampler: str,
              nfe: int, postprocess: Callable[[TileBatch, Tensor], Tensor] | None, channels: int | None,
              collect: Callable[[list, Tensor], None], options: dict[str, Any]) -> EngineResult:
    """The engine's fused path (``TileEngine.run(..., fuse=True)``); returns its :class:`EngineResult`.

    Images of the same ``(C, *spatial)`` and tile shape are sampled together, one sampler call
    per group; their tiles are read once (``read``) and batched by the engine's plan. The final
    global state is cut back into tiles, ``postprocess``-ed per batch and handed to ``collect``
    (the engine's stitcher), so outputs, ``on_complete`` and ``keep_tiles`` behave as on the
    independent path.
    """
    from scorerecon.pipelines.engine import EngineResult, tile_seed

    start = time.perf_counter()
    groups: dict[tuple, list[TileGrid]] = {}
    for g in grids:
        c = g.channels if channels is None else channels
        groups.setdefault((c, g.spatial, g.tiles[0].spatial_shape), []).append(g)
    n_tiles = sum(len(g) for g in grids)
    n_batches, batch_size, nfe_used, nfe_tiles, sample_s, read_s = 0, 0, 0, 0, 0.0, 0.0
    plan = None
    for (c, spatial, tile_shape), members in groups.items():
        tiles = [t for g in members for t in g.tiles]
        plan = engine.plan((c, *tile_shape), len(tiles))
        b = plan.batch_size
        t0 = time.perf_counter()
        batches = [engine._to_device(engine._load(tiles[i:i + b], read, b)) for i in range(0, len(tiles), b)]
        read_s += time.perf_counter() - t0
        fused = FusedTileModel(engine.model, members, batches)
        seeds = [tile_seed(engine.config.seed, g.source, 0) for g in members]
        gens = SampleGenerators(seeds, engine.device, engine.config.noise_device)
        res = sample(fused, (len(members), c, *spatial), sampler, nfe=nfe, seed=gens, device=engine.device,
                     **options)
        sample_s += res.seconds
        nfe_used = res.nfe
        nfe_tiles += res.nfe * len(tiles)
        n_batches += len(batches) * res.nfe
        batch_size = max(batch_size, b)
        for batch in batches:
            x = fused.tiles_of(res.x, batch)
            x = x if postprocess is None else postprocess(batch, x)
            collect(batch.items, x[:batch.n_real].detach().to("cpu"))
    return EngineResult({}, None, n_tiles, n_batches, batch_size, nfe_used, nfe_tiles,
                        time.perf_counter() - start, sample_s, read_s, plan, None)
