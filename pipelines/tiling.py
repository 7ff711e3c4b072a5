"""The one tiling implementation: overlapping tiles of any input, Gaussian-blended back together.

Every modality goes through :class:`TileGrid`: an input is an array ``(C, *spatial)``: a 2D image
``(C, H, W)``, a volume ``(C, Z, Y, X)`` or a multiband raster ``(band, y, x)`` (bands are the
channels). ``tile_size`` gives the tile extent per spatial dim: ``None`` takes the whole extent,
``1`` makes that dim a slicing dim that the network does not see. So

* ``(1, None, None)`` on a volume gives whole 2D slices (MRI / CT slice reconstruction),
* ``(1, 64, 64)`` gives 2D patches of each slice, ``(64, 64)`` 2D patches of an image/raster,
* ``(16, 64, 64)`` or ``(8, None, None)`` gives 3D slabs for a 3D network.

What is reused from MONAI (``SlidingWindowInferer(mode="gaussian")`` does the same for one
batch of images, but cannot mix tiles of many inputs with per-tile operators and seeds):

* tile positions: :func:`monai.data.utils.dense_patch_slices` with MONAI's scan-interval rule
  (``int(tile * (1 - overlap))``, at least 1; the whole extent when the tile spans it, as in
  ``monai.inferers.utils._get_scan_interval``, restated here because it is private). The last
  tile of a dim is moved back flush with the border, so non-divisible sizes are covered without
  padding;
* blending weights: :func:`monai.data.utils.compute_importance_map` (``"gaussian"``, sigma =
  ``sigma_scale`` x tile size, floored at 1e-3 so every voxel has positive weight), called per
  dim and multiplied out. MONAI floors the *product*, which flattens every tile's weight to the
  same 1e-3 along the image border (the product of two small factors): there a tile's edge --
  where its zero padding differs from the untiled image -- counts as much as its neighbour's
  clean interior, and a seam shows along the border (the seam test found it). Flooring each 1D
  factor keeps the interior dominant. In the same spirit a tile side that lies on the image
  border keeps its peak weight out to the border (:meth:`TileGrid.weight`): MONAI moves the
  last tile of a dim back flush with the border, so its neighbour's edge would otherwise get a
  noticeable share there. Away from the border the maps are MONAI's.

Stitching (:class:`Stitcher`) is the same weighted average as MONAI's inferer, ``sum_i w_i o_i /
sum_i w_i``, accumulated in float64 on the host: where tiles overlap the Gaussian weights make the
transition seam-free, and "tile then stitch" of the identity returns the input bit for bit
(float32 data; the float64 quotient rounds back to the original value). The tests also check
that a stitched run equals MONAI's ``sliding_window_inference`` on the same grid.

Geometry: ``affine`` is the input's index-to-world matrix over the spatial axes in *reversed*
array order, i.e. NIfTI's ``(i=x, j=y, k=z)`` 4x4 for a ``(z, y, x)`` volume (the store's
``affine`` attr) or rasterio's 3x3 ``(col, row)`` transform for a ``(band, y, x)`` raster (an
``affine.Affine`` is accepted). :meth:`TileGrid.tile_affine` composes it with the tile's offset,
so a tile -- and anything computed on it -- keeps its place in the world.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from monai.data.utils import compute_importance_map, dense_patch_slices

Tensor = torch.Tensor

__all__ = ["Stitcher", "Tile", "TileGrid", "scan_interval"]


def scan_interval(image_size: Sequence[int], tile_size: Sequence[int], overlap: Sequence[float]) -> tuple[int, ...]:
    """MONAI's sliding-window step per dim: ``int(tile * (1 - overlap))`` (>= 1), or the extent."""
    out = []
    for size, tile, ov in zip(image_size, tile_size, overlap, strict=True):
        out.append(int(tile) if tile == size else max(int(tile * (1.0 - ov)), 1))
    return tuple(out)


@dataclass(frozen=True)
class Tile:
    """One tile of one input: where it sits and how the network sees it.

    ``slices`` index the input's spatial dims (the channel dim is always taken whole);
    ``squeeze`` lists the spatial dims of extent 1 that are dropped for the network (e.g. ``z``
    for 2D slices of a volume). ``source`` names the input, ``index`` the tile within its grid.
    """

    source: str
    index: int
    slices: tuple[slice, ...]
    squeeze: tuple[int, ...] = ()

    @property
    def origin(self) -> tuple[int, ...]:
        """Index of the tile's first voxel in the input's spatial dims."""
        return tuple(int(s.start) for s in self.slices)

    @property
    def size(self) -> tuple[int, ...]:
        """Tile extent in every spatial dim (squeezed dims included, as 1)."""
        return tuple(int(s.stop - s.start) for s in self.slices)

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        """Spatial shape the network sees (squeezed dims removed)."""
        return tuple(n for d, n in enumerate(self.size) if d not in self.squeeze)


def _as_matrix(affine: Any, n: int) -> np.ndarray | None:
    if affine is None:
        return None
    m = np.asarray(tuple(affine) if not isinstance(affine, np.ndarray) else affine, dtype=np.float64)
    if m.size == (n + 1) ** 2:
        return m.reshape(n + 1, n + 1)
    if m.size == n * (n + 1):  # a 2 x 3 / 3 x 4 matrix without its last row (gdal / rasterio 6-tuple)
        return np.vstack([m.reshape(n, n + 1), np.eye(n + 1)[-1]])
    raise ValueError(f"affine with {m.size} entries does not fit {n} spatial dims ((n+1)^2 = {(n + 1) ** 2})")


class TileGrid:
    """Overlapping tiles over one input of shape ``(C, *spatial)``; see the module doc.

    ``overlap`` is the fraction of a tile shared with its neighbour (one value or one per dim);
    ``mode`` ``"gaussian"`` (default) or ``"constant"`` blending; ``sigma_scale`` as in MONAI.
    """

    def __init__(self, shape: Sequence[int], tile_size: Sequence[int | None], overlap: float | Sequence[float] = 0.25,
                 *, source: str = "0", mode: str = "gaussian", sigma_scale: float = 0.125,
                 affine: Any = None) -> None:
        shape = tuple(int(s) for s in shape)
        if len(shape) < 2:
            raise ValueError(f"shape must be (C, *spatial), got {shape}")
        self.shape, self.channels, self.spatial = shape, shape[0], shape[1:]
        n = len(self.spatial)
        if len(tile_size) != n:
            raise ValueError(f"tile_size has {len(tile_size)} entries for {n} spatial dims")
        size = tuple(self.spatial[d] if t is None else int(t) for d, t in enumerate(tile_size))
        if any(t < 1 or t > s for t, s in zip(size, self.spatial, strict=True)):
            raise ValueError(f"tile_size {size} must lie in [1, {self.spatial}] per dim")
        ov = (float(overlap),) * n if isinstance(overlap, (int, float)) else tuple(float(o) for o in overlap)
        if len(ov) != n or not all(0.0 <= o < 1.0 for o in ov):
            raise ValueError(f"overlap must be in [0, 1) for each of {n} dims, got {overlap}")
        self.tile_size, self.overlap, self.source = size, ov, str(source)
        self.mode, self.sigma_scale = mode, float(sigma_scale)
        self.squeeze = tuple(d for d, t in enumerate(size) if t == 1)
        if len(self.squeeze) == n:
            raise ValueError("every spatial dim is squeezed: tiles would be single voxels")
        step = scan_interval(self.spatial, size, ov)
        slices = dense_patch_slices(self.spatial, size, step)
        self.tiles = [Tile(self.source, i, tuple(slice(int(q.start), int(q.stop)) for q in s), self.squeeze)
                      for i, s in enumerate(slices)]
        self.affine = _as_matrix(affine, n)
        self._weights: dict[tuple, Tensor] = {}

    def __len__(self) -> int:
        return len(self.tiles)

    def __iter__(self):
        return iter(self.tiles)

    @property
    def tile_shape(self) -> tuple[int, ...]:
        """``(C, *spatial)`` of a tile as the network sees it (all tiles of a grid share it)."""
        return (self.channels, *self.tiles[0].spatial_shape)

    def weight(self, tile: Tile | None = None, device: torch.device | str = "cpu",
               dtype: torch.dtype = torch.float64) -> Tensor:
        """The blending weight of ``tile``, shaped like its full spatial extent (cached).

        Separable: per dim, MONAI's 1D importance map (Gaussian, floored at 1e-3). Where the tile
        touches the image border the map is held at its peak from the centre outwards: no other
        tile covers those voxels, and a border tile's edge is as trustworthy as the untiled
        image's (same zero padding), so it must outweigh its neighbours' contaminated edges
        there. ``tile=None`` gives the plain interior map.
        """
        flat = () if tile is None else tuple(
            (s.start == 0, s.stop == n) for s, n in zip(tile.slices, self.spatial, strict=True))
        key = (flat, str(device), dtype)
        if key not in self._weights:
            w = torch.ones((), dtype=torch.float64)
            for d, n in enumerate(self.tile_size):
                w1 = compute_importance_map((n,), mode=self.mode, sigma_scale=self.sigma_scale, device="cpu",
                                            dtype=torch.float64)
                if flat:
                    low, high = flat[d]
                    peak, mid = w1.max(), (n - 1) // 2
                    if low:
                        w1[:mid + 1] = peak
                    if high:
                        w1[n // 2:] = peak
                w = w[..., None] * w1
            self._weights[key] = w.to(device=device, dtype=dtype)
        return self._weights[key]

    def weight_sum(self, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float64) -> Tensor:
        """``sum_i w_i`` over every tile, ``(1, *spatial)``: the denominator of the blend (cached).

        :class:`Stitcher` accumulates the same sum as tiles arrive; the fused sampler
        (:mod:`.multidiffusion`) needs it up front, once per step.
        """
        key = ("sum", str(device), dtype)
        if key not in self._weights:
            total = torch.zeros((1, *self.spatial), dtype=torch.float64)
            for tile in self.tiles:
                total[(slice(None), *tile.slices)] += self.weight(tile)
            self._weights[key] = total.to(device=device, dtype=dtype)
        return self._weights[key]

    def tile_affine(self, tile: Tile) -> np.ndarray | None:
        """Index-to-world matrix of the tile's own voxel grid (``affine`` shifted by its origin)."""
        if self.affine is None:
            return None
        shift = np.eye(len(self.spatial) + 1)
        shift[:-1, -1] = tile.origin[::-1]  # affine axes run in reversed array order
        return self.affine @ shift

    def extract(self, array: Any, tile: Tile) -> Tensor:
        """The tile's data ``(C, *spatial_shape)`` from ``array`` (tensor, numpy, xarray or dask).

        Only the tile's region is read: a lazy (dask / xarray-on-Zarr) array computes just the
        chunks the tile touches.
        """
        region = array[(slice(None), *tile.slices)]
        if not isinstance(region, Tensor):
            region = torch.from_numpy(np.ascontiguousarray(np.asarray(region)))
        dims = [1 + d for d in sorted(tile.squeeze, reverse=True)]
        for d in dims:
            region = region.squeeze(d)
        return region

    def split(self, array: Any) -> list[Tensor]:
        """Every tile of ``array``, in grid order."""
        return [self.extract(array, t) for t in self.tiles]

    def stitcher(self, channels: int | None = None) -> Stitcher:
        """An empty :class:`Stitcher` for outputs of ``channels`` channels (default: the input's)."""
        return Stitcher(self, self.channels if channels is None else channels)

    def stitch(self, tiles: Sequence[Tensor], channels: int | None = None) -> Tensor:
        """Blend one output per tile (grid order) into the full ``(C, *spatial)`` result."""
        st = self.stitcher(tiles[0].shape[0] if channels is None else channels)
        st.add_many(self.tiles, tiles)
        return st.result()


class Stitcher:
    """Weighted-average accumulator for the outputs of one grid's tiles (float64, host memory).

    :meth:`add` takes a tile's output ``(C, *tile.spatial_shape)`` on any device (copied to the
    host), :meth:`result` divides by the summed weights. :attr:`complete` says whether every tile
    of the grid has been added, so a caller can write and free an input as soon as it is done.
    """

    def __init__(self, grid: TileGrid, channels: int) -> None:
        self.grid, self.channels = grid, int(channels)
        self.numerator = torch.zeros((self.channels, *grid.spatial), dtype=torch.float64)
        self.weights = torch.zeros((1, *grid.spatial), dtype=torch.float64)
        self.added: set[int] = set()

    @property
    def complete(self) -> bool:
        return len(self.added) == len(self.grid.tiles)

    def add(self, tile: Tile, values: Tensor) -> None:
        """Accumulate one tile's output."""
        if tile.source != self.grid.source:
            raise ValueError(f"tile of {tile.source!r} added to the stitcher of {self.grid.source!r}")
        v = values.detach().to("cpu", torch.float64)
        for d in sorted(tile.squeeze):
            v = v.unsqueeze(1 + d)
        expected = (self.channels, *tile.size)
        if tuple(v.shape) != expected:
            raise ValueError(f"tile output shape {tuple(v.shape)} != {expected}")
        w = self.grid.weight(tile)
        region = (slice(None), *tile.slices)
        self.numerator[region] += v * w
        self.weights[region] += w
        self.added.add(tile.index)

    def add_many(self, tiles: Iterable[Tile], values: Iterable[Tensor]) -> None:
        for tile, v in zip(tiles, values, strict=True):
            self.add(tile, v)

    def result(self, dtype: torch.dtype = torch.float32) -> Tensor:
        """``sum w o / sum w`` as ``dtype``; voxels no tile covered are NaN."""
        out = self.numerator / self.weights
        return out.to(dtype)
