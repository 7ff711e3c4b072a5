"""Tile engine: device choice, batch planning, per-tile seeds, batched guidance, prefetch, GPU parity."""

from __future__ import annotations

import math
import threading

import pytest
import torch
from torch import nn

from scorerecon.modalities.mri import CartesianMRI
from scorerecon.models.guidance import MeasurementProjection
from scorerecon.models.samplers import sample
from scorerecon.models.score_model import NetworkScoreModel
from scorerecon.models.sde import VESDE, VPSDE
from scorerecon.pipelines.device import precision_policy, resolve_device, set_flash_attention
from scorerecon.pipelines.engine import EngineConfig, TileEngine, TileItem, plan_batch, tile_seed
from scorerecon.pipelines.tiling import TileGrid

CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU (none here; runs on a GPU machine)")


class TinyNet(nn.Module):
    """A deterministic 2-layer conv 'denoiser' with time input; fast on CPU."""

    def __init__(self, data_channels: int = 2, cond_channels: int = 0) -> None:
        super().__init__()
        self.in_channels = data_channels + cond_channels
        g = torch.Generator().manual_seed(0)
        self.a = nn.Conv2d(self.in_channels, 8, 3, padding=1)
        self.b = nn.Conv2d(8, data_channels, 3, padding=1)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(0.2 * torch.randn(p.shape, generator=g))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.b(torch.tanh(self.a(x) * (1 + t / 999.0).reshape(-1, 1, 1, 1)))


def _model(data_channels: int = 2, cond_channels: int = 0) -> NetworkScoreModel:
    return NetworkScoreModel(TinyNet(data_channels, cond_channels), VPSDE(), "eps").eval()


def _mri_inputs(n_inputs: int = 2, slices: int = 3, size: int = 16):
    """Per-slice k-space measurements with per-slice masks: (grids, read, make_guidance, truth)."""
    g = torch.Generator().manual_seed(1)
    volumes = {f"vol{i}": torch.randn(2, slices, size, size, generator=g) for i in range(n_inputs)}
    masks = {k: (torch.rand(slices, 1, size, size, generator=g) < 0.4).float() for k in volumes}
    grids = [TileGrid(v.shape, (1, None, None), source=k) for k, v in volumes.items()]
    by_source = {gr.source: gr for gr in grids}

    def read(tile):
        vol, z = volumes[tile.source], tile.origin[0]
        x = by_source[tile.source].extract(vol, tile)  # (2, H, W) complex as channels
        mask = masks[tile.source][z]
        y = CartesianMRI(mask[None]).A(x[None])[0]
        return TileItem(tile, data={"mask": mask, "y": y})

    def make_guidance(batch):
        return MeasurementProjection(CartesianMRI(batch.data["mask"]), batch.data["y"])

    return grids, read, make_guidance, volumes


# --- device resolution ------------------------------------------------------------------------
def test_resolve_device_explicit_and_auto(monkeypatch):
    monkeypatch.delenv("SCORERECON_DEVICE", raising=False)
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    auto = resolve_device("auto")
    assert auto.type == ("cuda" if CUDA else ("mps" if torch.backends.mps.is_available() else "cpu"))
    assert resolve_device(None) == auto
    monkeypatch.setenv("SCORERECON_DEVICE", "cpu")
    assert resolve_device("auto") == torch.device("cpu")  # the environment pins "auto" ...
    assert resolve_device("cpu") == torch.device("cpu")  # ... and never overrides an explicit choice
    with pytest.raises(ValueError, match="unknown device"):
        resolve_device("tpu:0")


@pytest.mark.skipif(CUDA, reason="checks the message when CUDA is absent")
def test_resolve_device_refuses_missing_cuda():
    with pytest.raises(ValueError, match="CUDA is not available"):
        resolve_device("cuda:1")


@needs_cuda
def test_resolve_device_cuda_indices():
    assert resolve_device("cuda").type == "cuda"
    assert resolve_device("cuda:0") == torch.device("cuda", 0)
    with pytest.raises(ValueError, match="visible"):
        resolve_device(f"cuda:{torch.cuda.device_count()}")


def test_precision_policy():
    cpu = precision_policy(torch.device("cpu"))
    assert cpu.autocast_dtype is None and not cpu.tf32 and cpu.name == "fp32"
    gpu = precision_policy(torch.device("cuda", 0))  # a policy only; nothing runs on the GPU
    assert gpu.autocast_dtype == torch.bfloat16 and gpu.tf32 and gpu.flash_attention and gpu.name == "bf16"
    with pytest.raises(ValueError, match="CUDA"):
        precision_policy(torch.device("cpu"), "bf16")


def test_flash_attention_switch_keeps_the_function():
    from scorerecon.models.networks import build_network, unet_config

    torch.manual_seed(0)
    net = build_network(unet_config("small", 2), use_flash_attention=False).eval()
    x, t = torch.randn(1, 1, 16, 16), torch.full((1,), 500.0)
    with torch.no_grad():
        ref = net(x, t)
        assert set_flash_attention(net, True) >= 2  # the level attention and the middle block
        out = net(x, t)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)


# --- planning and seeds -------------------------------------------------------------------------
def test_memory_planner_on_cpu():
    model = _model()
    assert plan_batch(model, (2, 64, 64), "cpu").batch_size == 4
    assert plan_batch(model, (2, 64, 64), "cpu", n_tiles=3).batch_size == 3
    assert plan_batch(model, (2, 64, 64), "cpu", cpu_batch=16, max_batch=8).batch_size == 8
    engine = TileEngine(model, EngineConfig(device="cpu", batch_size=7))
    assert engine.plan((2, 64, 64), n_tiles=100).batch_size == 7
    assert engine.plan((2, 64, 64), n_tiles=5).batch_size == 5
    assert engine.cond_channels(2) == 0 and TileEngine(_model(4, 5), EngineConfig(device="cpu")).cond_channels(4) == 5


@needs_cuda
def test_memory_planner_on_cuda():
    from scorerecon.models.networks import build_network, unet_config

    model = NetworkScoreModel(build_network(unet_config("tiny", 2)), VPSDE(), "eps").cuda().eval()
    plan = plan_batch(model, (1, 64, 64), "cuda", max_batch=4096)
    free, _ = torch.cuda.mem_get_info()
    assert plan.reason == "probe" and plan.per_sample_bytes > 4 * 64 * 64
    assert plan.batch_size >= 1 and plan.batch_size * plan.per_sample_bytes <= free
    assert plan.batch_size < 8 or plan.batch_size % 8 == 0


def test_tile_seeds_are_stable_and_distinct():
    assert tile_seed(0, "a", 3) == tile_seed(0, "a", 3)
    seeds = {tile_seed(s, src, i) for s in (0, 1) for src in ("a", "b") for i in range(50)}
    assert len(seeds) == 200 and all(0 <= v < 2**63 for v in seeds)


# --- batching ------------------------------------------------------------------------------------
def test_batching_does_not_change_results():
    """Same tiles, per-tile seeds: batch 1, 2 (ragged), 4 with padding, 6 -> the same outputs.

    Equal up to the float rounding of batched conv kernels, which the first DDIM step amplifies
    by ``1 / alpha(1)`` (~150 on the VP SDE): hence 1e-3 rather than bitwise.
    """
    grids, read, make_guidance, _ = _mri_inputs()
    model = _model()
    results = {}
    for bs, fixed in ((1, False), (2, False), (4, True), (6, False)):
        engine = TileEngine(model, EngineConfig(device="cpu", batch_size=bs, fixed_shape=fixed))
        res = engine.run(grids, read, sampler="ddim", nfe=4, make_guidance=make_guidance, keep_tiles=True, eta=1.0)
        assert res.n_tiles == 6 and res.n_batches == math.ceil(6 / bs) and res.nfe == 4
        assert res.nfe_tiles == 6 * 4
        results[bs] = res
    ref = results[1]
    for res in results.values():
        assert set(res.tiles) == set(ref.tiles)
        for key in ref.tiles:
            torch.testing.assert_close(res.tiles[key], ref.tiles[key], rtol=1e-3, atol=1e-3)
        for src in ref.outputs:
            torch.testing.assert_close(res.outputs[src], ref.outputs[src], rtol=1e-3, atol=1e-3)
    # and a tile equals a plain sample() call of that tile alone with its own seed
    grid = grids[1]
    tile = grid.tiles[2]
    item = read(tile)
    guidance = MeasurementProjection(CartesianMRI(item.data["mask"][None]), item.data["y"][None])
    alone = sample(model, (1, *grid.tile_shape), "ddim", nfe=4, seed=[tile_seed(0, tile.source, tile.index)],
                   guidance=guidance, eta=1.0).x[0]
    torch.testing.assert_close(ref.tiles[(tile.source, tile.index)], alone, rtol=1e-3, atol=1e-3)
    # the measured k-space is kept exactly (hard data consistency on the last step)
    assert torch.allclose(CartesianMRI(item.data["mask"][None]).A(alone[None])[0], item.data["y"], atol=1e-4)


def test_conditioned_tiles_and_stitching_keep_geometry():
    """Pan-sharpening-like: 4-band output conditioned on 5 channels, patches of a raster."""
    g = torch.Generator().manual_seed(2)
    cond_image = torch.randn(5, 40, 36, generator=g)
    affine = [[10.0, 0.0, 1000.0], [0.0, -10.0, 5000.0], [0.0, 0.0, 1.0]]
    grid = TileGrid((4, 40, 36), (24, 24), 0.5, source="scene", affine=affine)
    cond_grid = TileGrid(cond_image.shape, (24, 24), 0.5)
    read = lambda tile: TileItem(tile, cond=cond_grid.extract(cond_image, tile))
    done = {}

    def on_complete(source, array, grd):
        done[source] = (array, grd.tile_affine(grd.tiles[0]))

    model = _model(4, 5)
    engine = TileEngine(model, EngineConfig(device="cpu", batch_size=3))
    res = engine.run([grid], read, sampler="ddim", nfe=3, on_complete=on_complete, keep_tiles=True)
    array, affine0 = done["scene"]
    assert array.shape == (4, 40, 36) and torch.isfinite(array).all() and res.outputs == {}
    assert affine0.tolist() == affine  # tile 0 starts at the origin
    torch.testing.assert_close(array, grid.stitch([res.tiles[("scene", t.index)] for t in grid.tiles]))
    tile = grid.tiles[4]
    alone = sample(model, (1, 4, 24, 24), "ddim", nfe=3, seed=[tile_seed(0, "scene", 4)],
                   cond=cond_grid.extract(cond_image, tile)[None]).x[0]
    torch.testing.assert_close(res.tiles[("scene", 4)], alone, rtol=1e-3, atol=1e-3)


def test_inconsistent_tiles_are_refused():
    grid = TileGrid((2, 2, 8, 8), (1, None, None), source="v")
    read = lambda tile: TileItem(tile, data={"y": torch.zeros(2, 8, 8 + tile.index)})
    with pytest.raises(ValueError, match="disagree"):
        TileEngine(_model(), EngineConfig(device="cpu", batch_size=2)).run([grid], read, nfe=2)


def test_prefetch_reads_the_next_batch_while_sampling():
    """The reader is called for batch k+1 while the network is still working on batch k."""
    grids, read, make_guidance, _ = _mri_inputs(n_inputs=1, slices=4)
    next_batch_read = threading.Event()
    seen_during_first_batch = []
    calls = []

    def tracking_read(tile):
        calls.append(tile.index)
        if tile.index >= 2:  # batch 2 with batch_size 2
            next_batch_read.set()
        return read(tile)

    class WatchingNet(TinyNet):
        def forward(self, x, t):
            if not seen_during_first_batch:  # first network call of batch 1: wait for the reader
                seen_during_first_batch.append(next_batch_read.wait(timeout=30))
            return super().forward(x, t)

    model = NetworkScoreModel(WatchingNet(), VPSDE(), "eps").eval()
    engine = TileEngine(model, EngineConfig(device="cpu", batch_size=2, prefetch=1))
    res = engine.run(grids, tracking_read, sampler="ddim", nfe=2, make_guidance=make_guidance, keep_tiles=True)
    assert seen_during_first_batch == [True]
    assert sorted(calls) == [0, 1, 2, 3] and res.n_batches == 2
    ref = TileEngine(_model(), EngineConfig(device="cpu", batch_size=4)).run(
        grids, read, sampler="ddim", nfe=2, make_guidance=make_guidance, keep_tiles=True)
    for key in ref.tiles:
        torch.testing.assert_close(res.tiles[key], ref.tiles[key], rtol=1e-3, atol=1e-3)


def test_pc_sampler_is_run_per_sample():
    """The engine runs pc's Langevin corrector with norm="sample": no coupling between tiles."""
    grids, read, make_guidance, _ = _mri_inputs(n_inputs=1, slices=3)
    outs = []
    for bs in (1, 3):
        model = NetworkScoreModel(TinyNet(), VESDE(), "eps").eval()
        engine = TileEngine(model, EngineConfig(device="cpu", batch_size=bs))
        res = engine.run(grids, read, sampler="pc", nfe=4, make_guidance=make_guidance, keep_tiles=True,
                         n_corrector=1)
        outs.append(res.tiles)
    for key in outs[0]:
        torch.testing.assert_close(outs[0][key], outs[1][key], rtol=1e-3, atol=1e-3)


# --- across devices --------------------------------------------------------------------------------
def _psnr(x: torch.Tensor, ref: torch.Tensor) -> float:
    mse = (x - ref).pow(2).mean().item()
    return 10 * math.log10(ref.abs().max().item() ** 2 / mse)


@needs_cuda
def test_cpu_and_gpu_agree_within_0p1_db():
    """Same seeds (noise drawn on the CPU for both), GPU at its production precision."""
    from scorerecon.models.networks import build_network, unet_config

    torch.manual_seed(0)
    grids, read, make_guidance, volumes = _mri_inputs(n_inputs=1, slices=4, size=64)
    net = build_network(unet_config("tiny", 2, data_channels=2), use_flash_attention=False)
    psnr = {}
    for dev in ("cpu", "cuda"):
        model = NetworkScoreModel(net, VPSDE(), "eps").eval()
        engine = TileEngine(model, EngineConfig(device=dev, batch_size=4, noise_device="cpu"))
        res = engine.run(grids, read, sampler="ddim", nfe=10, make_guidance=make_guidance)
        psnr[dev] = _psnr(res.outputs["vol0"], volumes["vol0"])
    assert abs(psnr["cpu"] - psnr["cuda"]) <= 0.1, psnr
