"""GeoTIFF / JPEG 2000 reader: georeferenced rasters into lazy ``(band, y, x)`` datasets.

What a store group holds (docs/conventions.md section 2):

* main variable ``image`` with dims ``("band", "y", "x")``, the source's integer dtype kept
  exactly (no masking, no scaling); ``x`` / ``y`` are pixel-centre coordinates in CRS units and
  the CRS and transform live in the ``spatial_ref`` coordinate (rioxarray's CF layout), so the
  store reads them back with ``decode_coords="all"``;
* a ``band`` coordinate of names: ``"B04"`` from file names such as ``l8_B4.tif`` or
  ``s2_B04.jp2`` (numbers zero-padded to two digits so Landsat and Sentinel names sort and
  compare alike; ``B8A`` and ``BQA`` kept), or the band descriptions of a multi-band file
  (``"B01"``, ``"B02"``, ... where it has none);
* ``image.attrs["nodata"]`` when the source declares one (rioxarray's ``rio.nodata`` finds it
  there), and non-trivial per-band ``scales`` / ``offsets`` as attrs, never applied.

Groups: sources that all share one grid (CRS, transform, shape) form the root group ``"/"``.
A product delivered at several resolutions (Landsat-8 pan 15 m + multispectral 30 m,
Sentinel-2 10/20/60 m) gives one group per resolution, named ``res_15m``, ``res_30m``, ...,
each stacking the bands of that exact grid; two grids at one resolution are refused, because
their pixels do not line up and silently resampling would change the data.

Pixels are read lazily, one ``(1, chunk, chunk)`` tile per dask task (default 512), through a
small window reader that turns any read failure into an :class:`InputError` naming the file,
so a store write streams with bounded memory and a corrupt source fails with one clear line.
TIFF sources are also checked up front for truncation (every strip/tile inside the file).
"""

from __future__ import annotations

import math
import os
import re
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import rasterio
import rioxarray
import xarray as xr
from dask.base import tokenize
from rasterio.errors import NotGeoreferencedWarning
from rasterio.windows import Window

from scorerecon.errors import InputError
from scorerecon.modalities.io.store import provenance_attrs

READER = "geotiff"
READER_VERSION = "1"
DEFAULT_CHUNK = 512

# "l8_B4", "s2_B8A", "LC08_..._B10", "l8_BQA": the band token after the last separator.
_BAND_TOKEN = re.compile(r"(?:^|[_\-.])(B(\d{1,2})([A-Z]?)|BQA)$", re.IGNORECASE)


class _WindowReader:
    """Array-like over one band of one raster file; dask reads it one window at a time.

    Each ``__getitem__`` opens the file, reads one window and closes it again, so tasks are
    independent (thread-safe, no shared GDAL handle) and a failure names the file.
    """

    def __init__(self, path: Path, band: int, shape: tuple[int, int], dtype: np.dtype) -> None:
        self.path = path
        self.band = band
        self.shape = shape
        self.dtype = np.dtype(dtype)
        self.ndim = 2

    def __getitem__(self, key: tuple[slice, slice]) -> np.ndarray:
        rows, cols = key
        window = Window.from_slices(rows, cols, height=self.shape[0], width=self.shape[1])
        try:
            with rasterio.open(self.path) as src:
                return src.read(self.band, window=window)
        except Exception as exc:  # GDAL reports corrupt data through several types
            raise InputError(self.path, f"cannot read band {self.band} pixels "
                                        f"({type(exc).__name__}: {exc})") from None


def band_name_from_path(path: Path) -> str | None:
    """``"B04"`` for ``l8_B4.tif``, ``"B8A"`` for ``s2_B8A.jp2``, ``"BQA"``; ``None`` if no token."""
    match = _BAND_TOKEN.search(path.stem)
    if not match:
        return None
    if match.group(1).upper() == "BQA":
        return "BQA"
    number, letter = int(match.group(2)), match.group(3).upper()
    return f"B{number}{letter}" if letter else f"B{number:02d}"


def _band_sort_key(name: str) -> tuple[int, int, str]:
    """Spectral order: B01 < ... < B08 < B8A < B09 < ... < B12, named bands (BQA) after."""
    match = re.fullmatch(r"B(\d+)([A-Z]?)", name)
    if match:
        return (0, int(match.group(1)), match.group(2))
    return (1, 0, name)


def _check_tiff_complete(path: Path) -> None:
    """Refuse a TIFF whose strips/tiles point past the end of the file (a truncated copy)."""
    import tifffile

    size = path.stat().st_size
    try:
        with tifffile.TiffFile(path) as tif:
            for page in tif.pages:
                ends = [o + n for o, n in zip(page.dataoffsets, page.databytecounts, strict=True) if n]
                if ends and max(ends) > size:
                    raise InputError(path, f"truncated TIFF: image data ends at byte {max(ends)} "
                                           f"but the file has {size} bytes")
    except InputError:
        raise
    except Exception as exc:
        raise InputError(path, f"corrupt TIFF structure ({type(exc).__name__}: {exc})") from None


def _inspect(path: Path) -> dict[str, Any]:
    """Header facts of one raster: grid, dtype, band count, nodata, names. Reads no pixels."""
    try:
        with warnings.catch_warnings():
            # a file without georeferencing is refused below, in one line, not warned about
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            src = rasterio.open(path)
        with src:
            info = {
                "path": path, "driver": src.driver, "crs": src.crs, "transform": src.transform,
                "shape": (src.height, src.width), "count": src.count, "dtypes": set(src.dtypes),
                "nodata": src.nodata, "descriptions": list(src.descriptions),
                "scales": list(src.scales), "offsets": list(src.offsets), "res": src.res,
            }
    except Exception as exc:
        raise InputError(path, f"not a readable raster ({type(exc).__name__}: {exc})") from None
    if info["crs"] is None:
        raise InputError(path, "raster has no CRS (not georeferenced); read it with --reader image, "
                               "or fix its georeferencing")
    if info["driver"] == "GTiff":
        _check_tiff_complete(path)
    return info


def _names_for(info: dict[str, Any]) -> list[str]:
    """Band names of one file: its file-name token (single band) or its descriptions."""
    if info["count"] == 1:
        return [band_name_from_path(info["path"]) or info["descriptions"][0] or info["path"].stem]
    descriptions = info["descriptions"]
    if all(descriptions) and len(set(descriptions)) == len(descriptions):
        return [str(d) for d in descriptions]
    return [f"B{i:02d}" for i in range(1, info["count"] + 1)]


def _grid_key(info: dict[str, Any]) -> tuple:
    return (info["crs"].to_wkt(), tuple(info["transform"])[:6], info["shape"])


def _resolution_group(info: dict[str, Any]) -> str:
    """``res_15m``, ``res_0p5m``, ``res_0p00027deg``; ``res_10x20m`` for non-square pixels."""
    unit = "deg" if info["crs"].is_geographic else "m"
    if not info["crs"].is_geographic:
        units = (info["crs"].linear_units or "").lower()
        if units not in ("metre", "meter", "m", "unknown", ""):
            unit = re.sub(r"[^a-z0-9]+", "", units)
    xres, yres = (float(f"{r:.10g}") for r in info["res"])
    text = f"{xres:g}" if math.isclose(xres, yres) else f"{xres:g}x{yres:g}"
    return f"res_{text.replace('.', 'p')}{unit}"


def _open_file(info: dict[str, Any], names: list[str], chunk: int) -> xr.DataArray:
    """One file as a lazy ``(band, y, x)`` DataArray with rioxarray coords and our reader."""
    path = info["path"]
    # rioxarray only builds coordinates and spatial_ref here: without ``chunks`` its data stay a
    # lazy backend array that we never touch.
    template = rioxarray.open_rasterio(path, mask_and_scale=False, parse_coordinates=True)
    dtype = np.result_type(*info["dtypes"])
    stamp = os.stat(path)
    bands = []
    for index in range(1, info["count"] + 1):
        reader = _WindowReader(path, index, info["shape"], dtype)
        name = f"read-{tokenize(str(path.resolve()), index, stamp.st_mtime_ns, stamp.st_size, chunk)}"
        bands.append(da.from_array(reader, chunks=(chunk, chunk), name=name, fancy=False,
                                   meta=np.empty((0, 0), dtype=dtype)))
    data = da.stack(bands, axis=0)
    coords = {"band": names, "y": template["y"].values, "x": template["x"].values,
              "spatial_ref": template["spatial_ref"]}
    template.close()
    return xr.DataArray(data, dims=("band", "y", "x"), coords=coords)


def _build_group(infos: list[dict[str, Any]], chunk: int) -> xr.Dataset:
    """Stack the bands of files that share one grid into one Dataset."""
    named = []
    for info in infos:
        for offset, name in enumerate(_names_for(info)):
            named.append((name, info, offset))
    seen: dict[str, Path] = {}
    for name, info, _ in named:
        if name in seen:
            raise InputError(info["path"], f"band {name!r} is also given by {seen[name]}; "
                                           "pass each band once")
        seen[name] = info["path"]
    nodata = {info["nodata"] for info in infos}
    if len(nodata) > 1:
        raise InputError(infos[-1]["path"], f"bands of one grid declare different nodata values "
                                            f"({sorted(map(str, nodata))})")
    arrays = [_open_file(info, _names_for(info), chunk) for info in infos]
    stacked = arrays[0] if len(arrays) == 1 else xr.concat(arrays, dim="band", coords="minimal",
                                                           compat="override", join="override")
    order = sorted(range(len(named)), key=lambda i: _band_sort_key(named[i][0]))
    if len(infos) > 1:  # a set of band files: spectral order, whatever order the shell gave
        stacked = stacked.isel(band=order)
        named = [named[i] for i in order]
    stacked = stacked.chunk({"band": 1, "y": chunk, "x": chunk})

    image = stacked.rename("image")
    image.attrs = {}
    (value,) = nodata
    if value is not None:
        image.attrs["nodata"] = "nan" if isinstance(value, float) and math.isnan(value) else value
    scales = [info["scales"][offset] for _, info, offset in named]
    offsets = [info["offsets"][offset] for _, info, offset in named]
    if any(s != 1.0 for s in scales) or any(o != 0.0 for o in offsets):
        image.attrs["scales"] = scales  # recorded, never applied: integer data stay exact
        image.attrs["offsets"] = offsets

    ds = image.to_dataset()
    first = infos[0]
    ds.attrs.update(provenance_attrs(READER, READER_VERSION, [info["path"] for info in infos]))
    ds.attrs["resolution"] = [float(first["res"][0]), float(first["res"][1])]
    ds.attrs["band_files"] = {name: str(info["path"].resolve()) for name, info, _ in named}
    return ds


def read(paths: list[Path], chunks: int = DEFAULT_CHUNK, **options: Any) -> dict[str, xr.Dataset]:
    """Read GeoTIFF / JPEG 2000 files into lazy ``(band, y, x)`` datasets keyed by group.

    ``chunks`` is the tile edge in pixels. Other options (``series=`` from ingest) are ignored.
    Raises :class:`InputError` for a file without CRS, an unreadable or truncated file, a band
    given twice, or two different grids at one resolution.
    """
    paths = [Path(p) for p in paths]
    if not paths:
        raise InputError(None, "no GeoTIFF / JPEG 2000 files given")
    infos = [_inspect(path) for path in paths]

    grids: OrderedDict[tuple, list[dict[str, Any]]] = OrderedDict()
    for info in infos:
        grids.setdefault(_grid_key(info), []).append(info)
    if len(grids) == 1:
        return {"/": _build_group(infos, chunks)}

    by_group: dict[str, tuple[tuple, list[dict[str, Any]]]] = {}
    for key, members in grids.items():
        group = _resolution_group(members[0])
        if group in by_group:
            other = by_group[group][1][0]["path"]
            raise InputError(members[0]["path"], f"same resolution ({group}) as {other} but a different "
                                                 "grid (CRS, origin or size); cannot stack them")
        by_group[group] = (key, members)
    ordered = sorted(by_group.items(), key=lambda item: (item[1][1][0]["res"][0], item[0]))
    return {group: _build_group(members, chunks) for group, (_, members) in ordered}
