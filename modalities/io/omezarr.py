"""OME-Zarr 0.5 export: a store group as a multiscale image that OME-Zarr viewers and archives read.

Layout (``OUT.ome.zarr``, Zarr v3)::

    zarr.json        attributes: {"ome": {"version": "0.5", "multiscales": [...]},
                                  "scorerecon": {provenance record, affine / CRS, value units}}
    0/ 1/ 2/ ...     the pyramid: level 0 is the data as stored (dtype and values kept exactly),
                     each next level halves y and x (2x2 mean, same dtype; z and band kept)

The ``multiscales`` metadata (axes with types and units, per-level ``scale`` and ``translation``)
is built with ``ome-zarr-models`` (``Image.new``), the same library that validates the result
(``Image.from_zarr``, called at the end of every export, so an invalid output is never published).
Arrays are written with zarr, slice by slice from the store's dask chunks.

Geometry: OME-Zarr 0.5 has only per-axis scale and translation. Medical ``(z, y, x)`` volumes get
the voxel spacing in millimetres as the scale and the affine's column norms; the full 4x4 RAS
affine (rotation included) is kept in ``attributes["scorerecon"]["affine"]``. Geo ``(band, y, x)``
rasters get ``band`` as a channel axis and the pixel size in CRS units (absolute values: the
north-up sign lives in the GeoTransform), with the CRS WKT and the transform kept beside it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
import zarr

from scorerecon.errors import InputError
from scorerecon.modalities.io.store import attrs_json, open_store

MAX_LEVELS = 4
MIN_EDGE = 64  # stop halving once y or x would drop below this


def _levels(shape_yx: tuple[int, int]) -> int:
    levels, (ny, nx) = 1, shape_yx
    while levels < MAX_LEVELS and min(ny, nx) // 2 >= MIN_EDGE:
        ny, nx, levels = ny // 2, nx // 2, levels + 1
    return levels


def _downsample(values: xr.DataArray) -> xr.DataArray:
    """2x2 mean over (y, x), trimming an odd edge; integers rounded back to their dtype."""
    coarse = values.coarsen(y=2, x=2, boundary="trim").mean()
    if np.issubdtype(values.dtype, np.integer):
        coarse = coarse.round()
    return coarse.astype(values.dtype)


def export_omezarr(store_path: str | os.PathLike, out: str | os.PathLike, group: str,
                   overwrite: bool = False) -> Path:
    """Write one store group as an OME-Zarr 0.5 multiscale image (see the module docstring)."""
    from ome_zarr_models.v05.axes import Axis
    from ome_zarr_models.v05.image import Image
    from pydantic_zarr.v3 import ArraySpec

    from scorerecon.modalities.io.export import _atomic_outputs, _image, protected_paths, provenance

    store_path, out = Path(store_path), Path(out)
    if not out.name.endswith(".zarr"):
        raise InputError(out, "OME-Zarr output must end with .ome.zarr or .zarr")
    ds = open_store(store_path, group)
    image = _image(ds, store_path, group, "omezarr")
    record: dict[str, Any] = provenance(store_path, ds, group, "omezarr")
    if image.dims == ("y", "x"):
        image = image.expand_dims("z")
    if image.dims == ("z", "y", "x"):
        affine = attrs_json(ds, "affine")
        if affine is None:
            raise InputError(store_path, "omezarr export of a (z, y, x) image needs an 'affine' attr")
        affine = np.asarray(affine, dtype=np.float64)
        spacing = [float(np.linalg.norm(affine[:3, i])) for i in (2, 1, 0)]  # z, y, x
        axes = [Axis(name=n, type="space", unit="millimeter") for n in ("z", "y", "x")]
        record["affine"] = affine.tolist()
    elif image.dims == ("band", "y", "x"):
        if ds.rio.crs is None:
            raise InputError(store_path, f"group {group!r} has no CRS; omezarr export of (band, y, x) needs one")
        transform = ds.rio.transform()
        spacing = [1.0, abs(transform.e), abs(transform.a)]
        unit = "meter" if ds.rio.crs.linear_units in ("metre", "meter") else None
        axes = [Axis(name="c", type="channel"), Axis(name="y", type="space", unit=unit),
                Axis(name="x", type="space", unit=unit)]
        record["crs_wkt"] = ds.rio.crs.to_wkt()
        record["transform"] = list(transform)[:6]
        record["bands"] = [str(b) for b in image["band"].values] if "band" in image.coords else None
    else:
        raise InputError(store_path, f"omezarr export needs dims (z, y, x), (y, x) or (band, y, x), not {image.dims}")
    if image.attrs.get("units"):
        record["value_units"] = str(image.attrs["units"])

    n_levels = _levels((image.sizes["y"], image.sizes["x"]))
    pyramid = [image]
    for _ in range(1, n_levels):
        pyramid.append(_downsample(pyramid[-1]))
    specs, scales, translations = [], [], []
    for level, arr in enumerate(pyramid):
        factor = 2 ** level
        chunks = (1, min(arr.shape[1], 512), min(arr.shape[2], 512))
        specs.append(ArraySpec.from_array(np.empty((0, 0, 0), dtype=arr.dtype), chunk_grid={
            "name": "regular", "configuration": {"chunk_shape": list(chunks)}},
            dimension_names=[a.name for a in axes]).model_copy(update={"shape": tuple(arr.shape)}))
        scales.append([spacing[0], spacing[1] * factor, spacing[2] * factor])
        translations.append([0.0, spacing[1] * (factor - 1) / 2, spacing[2] * (factor - 1) / 2])
    name = Path(store_path).name.removesuffix(".zarr") + ("" if group == "/" else f"/{group}")
    model = Image.new(array_specs=specs, paths=[str(i) for i in range(n_levels)], axes=axes, scales=scales,
                      translations=translations, name=name, multiscale_type="2x2 mean (y, x)")
    attributes = model.attributes.model_dump(mode="json", exclude_none=True)
    attributes["scorerecon"] = record

    with _atomic_outputs(out, overwrite=overwrite, protect=protected_paths(store_path, ds), directory=True) as (stage,):
        root = zarr.open_group(stage, mode="w", zarr_format=3, attributes=attributes)
        for level, (arr, spec) in enumerate(zip(pyramid, specs, strict=True)):
            target = root.create_array(str(level), shape=arr.shape, dtype=arr.dtype,
                                       chunks=spec.chunk_grid["configuration"]["chunk_shape"],
                                       dimension_names=[a.name for a in axes], fill_value=0)
            for k in range(arr.shape[0]):
                try:
                    target[k] = np.asarray(arr[k].values)
                except Exception as exc:
                    raise InputError(store_path, f"corrupt chunk while reading image "
                                                 f"({type(exc).__name__}: {exc})") from None
        validate_omezarr(stage)
    return out


def validate_omezarr(path: str | os.PathLike) -> Any:
    """Validate an OME-Zarr 0.5 image with ``ome-zarr-models``; :class:`InputError` naming the problem."""
    from ome_zarr_models.v05.image import Image

    try:
        return Image.from_zarr(zarr.open_group(path, mode="r", zarr_format=3))
    except Exception as exc:  # pydantic ValidationError and zarr errors
        first = str(exc).splitlines()
        raise InputError(path, f"not a valid OME-Zarr 0.5 image: {' '.join(first[:3])}") from None
