"""Fused tiled sampling (MultiDiffusion): one coherent image per sample, honest spread in overlaps."""

from __future__ import annotations

import pytest
import torch
from test_engine import TinyNet, _mri_inputs
from torch import nn

from scorerecon.models.samplers import sample
from scorerecon.models.score_model import NetworkScoreModel
from scorerecon.models.sde import VPSDE
from scorerecon.pipelines.engine import EngineConfig, TileEngine, TileItem, tile_seed
from scorerecon.pipelines.tiling import TileGrid


class Pointwise(nn.Module):
    """A per-pixel network (1x1 convolutions): a tile predicts exactly what the whole image does."""

    def __init__(self, data_channels: int = 2, cond_channels: int = 0) -> None:
        super().__init__()
        self.in_channels = data_channels + cond_channels
        g = torch.Generator().manual_seed(3)
        self.a = nn.Conv2d(self.in_channels, 6, 1)
        self.b = nn.Conv2d(6, data_channels, 1)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(0.5 * torch.randn(p.shape, generator=g))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.b(torch.tanh(self.a(x) * (1 + t / 999.0).reshape(-1, 1, 1, 1)))


def _conditioned(n: int, shape=(2, 44, 38), tile=(24, 24), overlap=0.5):
    g = torch.Generator().manual_seed(5)
    cond = torch.randn(3, *shape[1:], generator=g)
    grids = [TileGrid(shape, tile, overlap, source=f"img{i}") for i in range(n)]
    cond_grid = TileGrid((3, *shape[1:]), tile, overlap)
    return grids, cond, (lambda t: TileItem(t, cond=cond_grid.extract(cond, t)))


def test_fused_tiles_of_a_pointwise_network_equal_the_untiled_sample():
    """Tiles agree everywhere, so fusing them must give the whole-image sample of the same seed."""
    grids, cond, read = _conditioned(2)
    model = NetworkScoreModel(Pointwise(2, 3), VPSDE(), "v").eval()
    engine = TileEngine(model, EngineConfig(device="cpu", batch_size=4))
    res = engine.run(grids, read, sampler="ddim", nfe=6, eta=1.0, fuse=True, keep_tiles=True)
    assert res.n_tiles == sum(len(g) for g in grids) and len(grids[0]) > 4 and res.nfe == 6
    assert res.nfe_tiles == 6 * res.n_tiles
    for g in grids:
        whole = sample(model, (1, *g.shape), "ddim", nfe=6, seed=[tile_seed(0, g.source, 0)], cond=cond[None],
                       eta=1.0).x[0]
        torch.testing.assert_close(res.outputs[g.source], whole, rtol=1e-4, atol=1e-4)
        # every kept tile is a window of that one image
        t = g.tiles[3]
        torch.testing.assert_close(res.tiles[(g.source, t.index)], whole[(slice(None), *t.slices)],
                                   rtol=1e-4, atol=1e-4)
    assert not torch.allclose(res.outputs["img0"], res.outputs["img1"])  # images draw their own noise


def test_fused_results_do_not_depend_on_batching():
    grids, _, read = _conditioned(3)
    model = NetworkScoreModel(TinyNet(2, 3), VPSDE(), "x0").eval()  # 3x3 convolutions: tiles disagree at edges
    outs = []
    for bs, fixed in ((1, False), (5, False), (8, True)):
        res = TileEngine(model, EngineConfig(device="cpu", batch_size=bs, fixed_shape=fixed)).run(
            grids, read, sampler="ddim", nfe=4, eta=1.0, fuse=True)
        outs.append(res.outputs)
    for other in outs[1:]:
        for src in outs[0]:
            torch.testing.assert_close(other[src], outs[0][src], rtol=1e-4, atol=1e-4)


def test_posterior_std_in_overlaps_matches_tile_centres():
    """Stationary scene (no condition, translation-invariant network), 32 posterior samples.

    Tile overlaps = pixels where no tile has more than 75 % of the blending weight; centres =
    pixels where one tile has over 99 %; both at least 4 pixels inside the image (its border
    is not stationary: zero padding). Fused, the mean std agrees within 10 %; blending
    independently sampled tiles (the engine's default) deflates it in the overlaps.
    """
    model = NetworkScoreModel(TinyNet(1, 0), VPSDE(), "x0").eval()
    h = w = 80
    grids = [TileGrid((1, h, w), (32, 32), 0.25, source=f"s{i}") for i in range(32)]
    g = grids[0]
    share = torch.zeros(h, w, dtype=torch.float64)
    for t in g.tiles:
        share[t.slices] = torch.maximum(share[t.slices], g.weight(t))
    share /= g.weight_sum()[0]
    inner = torch.zeros(h, w, dtype=torch.bool)
    inner[4:-4, 4:-4] = True
    overlap, centre = (share < 0.75) & inner, (share > 0.99) & inner
    assert overlap.sum() > 300 and centre.sum() > 300
    ratio = {}
    for fuse in (True, False):
        res = TileEngine(model, EngineConfig(device="cpu", batch_size=8)).run(
            grids, lambda t: TileItem(t), sampler="ddim", nfe=8, eta=1.0, fuse=fuse)
        std = torch.stack([res.outputs[s.source][0] for s in grids]).std(0)
        ratio[fuse] = (std[overlap].mean() / std[centre].mean()).item()
    assert abs(ratio[True] - 1) < 0.10, ratio
    assert ratio[False] < 0.85, ratio  # the pattern the fused path removes


def test_fused_sampling_refuses_per_tile_guidance():
    grids, read, make_guidance, _ = _mri_inputs(n_inputs=1, slices=2)
    engine = TileEngine(NetworkScoreModel(TinyNet(), VPSDE(), "eps").eval(), EngineConfig(device="cpu"))
    with pytest.raises(ValueError, match="guidance"):
        engine.run(grids, read, nfe=2, make_guidance=make_guidance, fuse=True)


class _SliceWise:
    """A 2D score model applied slice by slice to ``(B, C, Z, H, W)``: the untiled reference of a volume."""

    def __init__(self, model: NetworkScoreModel) -> None:
        self.model, self.sde = model, model.sde

    def predict(self, x, t, cond=None):
        from scorerecon.models.parametrization import Prediction

        b, c, z, h, w = x.shape
        pred = self.model.predict(x.transpose(1, 2).reshape(b * z, c, h, w), t.repeat_interleave(z))
        out = pred.output.reshape(b, z, c, h, w).transpose(1, 2)
        return Prediction(pred.kind, out, x, self.sde.alpha(t), self.sde.sigma(t))


def test_fused_volume_slices_with_on_complete():
    """2D patches of every slice of a volume (a squeezed dim) fused, handed to on_complete."""
    model = NetworkScoreModel(Pointwise(2, 0), VPSDE(), "eps").eval()
    grid = TileGrid((2, 3, 30, 26), (1, 16, 16), 0.25, source="vol")
    done = {}
    res = TileEngine(model, EngineConfig(device="cpu", batch_size=6)).run(
        [grid], lambda t: TileItem(t), sampler="ddim", nfe=3, fuse=True,
        on_complete=lambda s, a, g: done.__setitem__(s, a))
    assert res.outputs == {} and done["vol"].shape == (2, 3, 30, 26)
    whole = sample(_SliceWise(model), (1, 2, 3, 30, 26), "ddim", nfe=3, seed=[tile_seed(0, "vol", 0)]).x[0]
    torch.testing.assert_close(done["vol"], whole, rtol=1e-4, atol=1e-4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none here; runs on a GPU machine)")
def test_fused_sampling_on_cuda_matches_cpu():
    """Same seeds (noise drawn on the CPU for both), strict fp32: the fused path gives the same images on the GPU."""
    grids, _, read = _conditioned(3)
    outs = {}
    for dev in ("cpu", "cuda"):
        model = NetworkScoreModel(TinyNet(2, 3), VPSDE(), "x0").eval()
        engine = TileEngine(model, EngineConfig(device=dev, batch_size=4, noise_device="cpu", precision="fp32"))
        res = engine.run(grids, read, sampler="ddim", nfe=5, eta=1.0, fuse=True)
        outs[dev] = res.outputs
    for src in outs["cpu"]:
        torch.testing.assert_close(outs["cuda"][src], outs["cpu"][src], rtol=1e-3, atol=1e-3)
