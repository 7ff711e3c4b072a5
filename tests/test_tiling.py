"""Tiling: exact identity stitch, MONAI-equivalent blending, no seams, geometry kept."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.inferers import sliding_window_inference
from torch.nn import functional as nnf

from scorerecon.pipelines.tiling import TileGrid


def _data(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize(
    ("shape", "tile", "overlap"),
    [
        ((1, 70, 53), (32, 24), 0.25),  # 2D image, non-divisible both ways
        ((2, 9, 37, 41), (4, 16, 16), 0.5),  # 3D slabs
        ((1, 7, 45, 45), (1, 32, 32), 0.25),  # 2D patches of each slice
        ((1, 5, 40, 33), (1, None, None), 0.0),  # whole slices
        ((4, 101, 67), (48, 48), (0.3, 0.6)),  # multiband raster, per-dim overlap
    ],
)
def test_identity_stitch_is_exact(shape, tile, overlap):
    x = _data(*shape)
    grid = TileGrid(x.shape, tile, overlap)
    tiles = grid.split(x)
    assert all(tuple(t.shape) == grid.tile_shape for t in tiles)
    assert torch.equal(grid.stitch(tiles), x)  # bit for bit
    # every voxel covered, and with overlap > 0 neighbouring tiles really overlap
    cover = torch.zeros(x.shape[1:])
    for t in grid.tiles:
        cover[t.slices] += 1
    assert cover.min() >= 1
    if isinstance(overlap, float) and overlap > 0:
        assert cover.max() >= 2


def test_stitch_equals_monai_sliding_window():
    """Same tile positions and averaging as MONAI's ``sliding_window_inference``.

    Compared with ``mode="constant"`` because the Gaussian maps differ on purpose along the
    image border (see the tiling module doc); the Gaussian interiors agree.
    """
    x = _data(1, 3, 75, 58)
    fn = lambda z: torch.tanh(2 * z) + z.mean(dim=(-1, -2), keepdim=True)  # depends on the tile's content
    grid = TileGrid(x.shape[1:], (32, 32), 0.25, mode="constant")
    ours = grid.stitch([fn(t[None])[0] for t in grid.split(x[0])])
    ref = sliding_window_inference(x, (32, 32), 4, fn, overlap=0.25, mode="constant")
    torch.testing.assert_close(ours, ref[0], rtol=1e-5, atol=1e-5)
    g = TileGrid((1, 40, 40), (32, 32)).weight(dtype=torch.float32)
    from monai.data.utils import compute_importance_map

    monai_map = compute_importance_map((32, 32), mode="gaussian")
    inner = (slice(6, 26), slice(6, 26))
    torch.testing.assert_close(g[inner], monai_map[inner])


class _Denoiser(torch.nn.Module):
    """A fixed smoothing + nonlinearity, receptive-field radius 3, zero-padded like a UNet."""

    def __init__(self) -> None:
        super().__init__()
        k = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0])
        self.register_buffer("k", (k[:, None] * k[None, :] / 256.0)[None, None])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(nnf.conv2d(x, self.k, padding=2))
        return nnf.conv2d(h, self.k[..., 1:4, 1:4] / self.k[..., 1:4, 1:4].sum(), padding=1)


def test_tiled_denoiser_matches_whole_without_seams():
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 150), torch.linspace(-1, 1, 130), indexing="ij")
    image = (torch.sin(6 * xx) * torch.cos(4 * yy) + 0.1 * _data(150, 130))[None]  # (1, H, W)
    net = _Denoiser()
    whole = net(image[None])[0]
    grid = TileGrid(image.shape, (48, 48), 0.5)
    tiled = grid.stitch([net(t[None])[0] for t in grid.split(image)])
    diff = (tiled - whole)[0]
    # the only disagreement is the tiles' own zero padding at their inner edges, weighted ~1e-3
    scale = whole.abs().max()
    assert diff.abs().max() < 3e-3 * scale
    assert diff.abs().mean() < 1e-4 * scale
    # no seams: a seam is a step in the difference image along a tile boundary. Along every
    # row / column line (tile boundaries included) the mean step of the difference image stays
    # below 5 % of the image's own mean pixel-to-pixel variation, i.e. invisible.
    d, w = diff, whole[0]
    for axis in (0, 1):
        step_d = d.diff(dim=axis).abs().mean(dim=1 - axis)  # one value per boundary line
        step_w = w.diff(dim=axis).abs().mean()
        assert step_d.max() < 0.05 * step_w


def test_tiles_keep_medical_affine():
    affine = np.array([[-0.9, 0.0, 0.1, 90.0], [0.0, 0.8, 0.0, -120.0], [0.0, 0.05, 2.5, -60.0], [0, 0, 0, 1]])
    grid = TileGrid((1, 10, 50, 60), (1, 32, 32), 0.25, affine=affine)
    for tile in grid.tiles:
        z0, y0, x0 = tile.origin
        world = grid.tile_affine(tile) @ np.array([3.0, 2.0, 0.0, 1.0])  # tile voxel (i=3, j=2, k=0)
        np.testing.assert_allclose(world, affine @ np.array([x0 + 3, y0 + 2, z0, 1.0]))


def test_tiles_keep_geo_transform():
    from affine import Affine

    transform = Affine(30.0, 0.0, 500000.0, 0.0, -30.0, 4200000.0)
    grid = TileGrid((4, 90, 70), (32, 32), 0.25, affine=transform)
    tile = grid.tiles[-1]
    row0, col0 = tile.origin
    m = grid.tile_affine(tile)
    tile_transform = Affine(*m[:2].ravel())
    assert _apply(tile_transform, 0, 0) == _apply(transform, col0, row0)
    assert _apply(tile_transform, 5, 7) == pytest.approx(_apply(transform, col0 + 5, row0 + 7))


def _apply(transform, col: float, row: float) -> tuple[float, float]:
    """``transform`` at pixel ``(col, row)``, spelled out: ``affine`` 2.x has no ``Affine @ tuple``, 3.x
    deprecates ``Affine * tuple``, and the coefficients ``a..f`` read the same in both."""
    a, b, c, d, e, f = tuple(transform)[:6]
    return a * col + b * row + c, d * col + e * row + f


def test_lazy_input_reads_only_the_tile():
    xr = pytest.importorskip("xarray")
    da = pytest.importorskip("dask.array")
    arr = np.arange(2 * 40 * 30, dtype=np.float32).reshape(2, 40, 30)
    lazy = xr.DataArray(da.from_array(arr, chunks=(1, 16, 16)), dims=("band", "y", "x"))
    grid = TileGrid(arr.shape, (16, 16), 0.25)
    for tile, t in zip(grid.tiles, grid.split(lazy), strict=True):
        assert torch.equal(t, torch.from_numpy(arr[(slice(None), *tile.slices)]))


def test_bad_grids_are_refused():
    with pytest.raises(ValueError, match="tile_size"):
        TileGrid((1, 20, 20), (32, 16))
    with pytest.raises(ValueError, match="overlap"):
        TileGrid((1, 20, 20), (8, 8), 1.0)
    with pytest.raises(ValueError, match="squeezed"):
        TileGrid((1, 20, 20), (1, 1))
