"""Exporters: a store group into the archive's native formats (NIfTI, COG GeoTIFF, PNG, DICOM).

Every exporter

* refuses (:class:`InputError`) a store or group it cannot represent faithfully: NIfTI and
  DICOM need a medical ``(z, y, x)`` (or ``(y, x)``) ``image`` with a 4x4 RAS ``affine`` attr,
  GeoTIFF needs a CRS, nothing takes complex k-space;
* reads pixels through :func:`~scorerecon.modalities.io.store.load_checked`, so a corrupt chunk
  is one clear error, never a traceback or a half-made file;
* writes under a hidden sibling name (``.partial-<pid>-<id>-<name>``) and publishes it (fsync,
  rename) only when the whole output (and its sidecar) is on disk, removing the partial output on
  any failure; ``--overwrite`` replaces only what scorerecon wrote, never the store being read or
  its sources (:mod:`~scorerecon.modalities.io.outputs`);
* records provenance where the format allows: the source store path and the sha256 of every
  file the store was ingested from (NIfTI: ``descrip`` + JSON sidecar ``<out>.json``; COG: GDAL
  metadata tags ``SCORERECON_*``; PNG: an ``iTXt`` chunk ``scorerecon``; DICOM: a private
  block ``scorerecon`` (0011,xx) plus ``DerivationDescription``);
* writes ``<out>.sha256`` beside the output: the sha256 of every file it wrote, sidecars
  included (``sha256sum`` format; :mod:`~scorerecon.modalities.io.manifest`), which
  ``scorerecon provenance verify`` checks.

Value conventions:

* NIfTI and GeoTIFF keep dtype and values exactly.
* NIfTI also gets the record as a JSON header extension and a BIDS-derivatives sidecar
  ``<stem>.json`` (GeneratedBy, Sources); a COG gets a STAC Item ``<stem>.stac.json``
  (:mod:`~scorerecon.modalities.io.stac`); ``omezarr`` writes OME-Zarr 0.5
  (:mod:`~scorerecon.modalities.io.omezarr`).
* DICOM: integer data are stored exactly (uint16 or int16, or uint16 with ``RescaleIntercept``
  when the range spans <= 65535 values); float data are mapped linearly onto int16
  ``[-32767, 32767]`` with ``RescaleSlope`` / ``RescaleIntercept`` (error <= slope / 2).
* PNG: uint8 and uint16 are written as they are; other integers whose range spans <= 65535
  values are stored as uint16 ``value - offset`` (exact, offset in the text chunk); floats (and
  wider integers) are scaled linearly from a window ``(lo, hi)`` — given, or the data's min/max —
  onto ``0 .. 2**bits - 1`` (``bits`` 16 by default, or 8), clipped, NaN -> 0; the window is in
  the text chunk, so ``value = lo + pixel * (hi - lo) / (2**bits - 1)``.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from scorerecon import __version__
from scorerecon.errors import InputError
from scorerecon.modalities.io.manifest import manifest_path, write_manifest
from scorerecon.modalities.io.outputs import (
    check_output,
    publish,
    remove_path,
    remove_stale_staging,
    staging_path,
    write_marker,
)
from scorerecon.modalities.io.store import ROOT, attrs_json, load_checked, open_store, store_groups

FORMATS = ("nifti", "geotiff", "png", "dicom", "omezarr")
DIRECTORY_FORMATS = ("png", "dicom", "omezarr")  # the others write one file (+ sidecars)
COLOUR_BANDS = (("L",), ("L", "A"), ("R", "G", "B"), ("R", "G", "B", "A"))
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
SECONDARY_CAPTURE_STORAGE = "1.2.840.10008.5.1.4.1.1.7"
LPS_FROM_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])  # its own inverse: RAS = diag(-1,-1,1) @ LPS


# ----------------------------------------------------------------------------------------------
# shared helpers


def provenance(store_path: str | os.PathLike, ds: xr.Dataset, group: str, fmt: str) -> dict[str, Any]:
    """What an export records about where it came from: store, group, source files + sha256."""
    sources = attrs_json(ds, "source_files") or []
    return {
        "exported_by": f"scorerecon {__version__} export --format {fmt}",
        "source_store": str(Path(store_path).resolve()),
        "group": group,
        "reader": ds.attrs.get("reader"),
        "source_files": [{"path": s.get("path"), "sha256": s.get("sha256")} for s in sources
                         if isinstance(s, dict)],
    }


def protected_paths(store_path: str | os.PathLike, *datasets: xr.Dataset) -> list[str]:
    """What an export must never overwrite: the store it reads and the files that store came from."""
    paths = [str(store_path)]
    for ds in datasets:
        paths += [s["path"] for s in attrs_json(ds, "source_files") or [] if isinstance(s, dict) and s.get("path")]
    return paths


@contextmanager
def _atomic_outputs(*outs: Path, overwrite: bool = False, protect: Iterable[str | os.PathLike] = (),
                    directory: bool = False) -> Iterator[list[Path]]:
    """Yield staging paths for ``outs``; publish them all only if the body succeeds.

    ``outs[0]`` is the main output (a folder when ``directory``: it gets the output marker), the
    rest are sidecar files. Every target is checked with
    :func:`~scorerecon.modalities.io.outputs.check_output` (``protect``: the store and its
    sources), before the work and again before publishing. One more sidecar is added here and
    written after the body: ``OUT.sha256``, the sha256 of every file published
    (:mod:`~scorerecon.modalities.io.manifest`).
    """
    outs = (*outs, manifest_path(outs[0]))
    kinds = ["dir" if directory and i == 0 else "file" for i in range(len(outs))]
    for out, kind in zip(outs, kinds, strict=True):
        check_output(out, kind, overwrite, protect)
        remove_stale_staging(out)
    if outs:
        outs[0].parent.mkdir(parents=True, exist_ok=True)
    staging = [staging_path(out) for out in outs]
    try:
        yield staging[:-1]
        for stage in staging[:-1]:
            if not stage.exists():
                raise RuntimeError(f"exporter did not write {stage}")
        if directory:
            write_marker(staging[0], "export")
        write_manifest(staging[-1], zip(staging[:-1], outs[:-1], strict=True), outs[-1].parent)
        for out, kind in zip(outs, kinds, strict=True):
            check_output(out, kind, overwrite, protect)
        # sidecars first, the main output last: a visible main output always has its sidecar
        for stage, out in reversed(list(zip(staging, outs, strict=True))):
            publish(stage, out)
    except BaseException:
        for stage in staging:
            remove_path(stage)
        raise


def _finite_range(image: xr.DataArray, store_path: str | os.PathLike) -> tuple[float, float, int]:
    """Min and max over the finite values of ``image``, and how many values are not finite (NaN/Inf)."""
    def compute() -> tuple[float, float, int]:
        if image.dtype.kind != "f":
            return float(image.min().compute()), float(image.max().compute()), 0
        finite = np.isfinite(image)
        kept = image.where(finite)
        return (float(kept.min(skipna=True).compute()), float(kept.max(skipna=True).compute()),
                int((~finite).sum().compute()))

    return _checked(compute, store_path, "min/max")


def _checked(compute: Callable[[], Any], store_path: str | os.PathLike, what: str) -> Any:
    """Run a dask computation over store chunks, turning a corrupt chunk into an InputError."""
    try:
        return compute()
    except InputError:
        raise
    except Exception as exc:
        raise InputError(store_path, f"corrupt chunk while reading {what} "
                                     f"({type(exc).__name__}: {exc})") from None


def _image(ds: xr.Dataset, store_path: str | os.PathLike, group: str, fmt: str) -> xr.DataArray:
    if "image" not in ds.data_vars:
        held = ", ".join(map(str, ds.data_vars)) or "nothing"
        raise InputError(store_path, f"group {group!r} has no 'image' variable (it holds {held}); "
                                     f"{fmt} export needs an image (reconstruct k-space first)")
    image = ds["image"]
    if np.issubdtype(image.dtype, np.complexfloating):
        raise InputError(store_path, f"group {group!r} holds complex data; {fmt} export needs real values")
    return image


def _resolve_group(store_path: Path, group: str | None) -> str:
    groups = store_groups(store_path)
    if group is None:
        if len(groups) == 1:
            return groups[0]
        raise InputError(store_path, f"store has several groups ({', '.join(groups)}); pick one with --group")
    wanted = ROOT if group in ("", ROOT) else group.strip("/")
    if wanted not in groups:
        raise InputError(store_path, f"no group {group!r} in store (it has {', '.join(groups)})")
    return wanted


def _affine(ds: xr.Dataset, store_path: Path, fmt: str) -> np.ndarray:
    affine = attrs_json(ds, "affine")
    if affine is None:
        raise InputError(store_path, f"store has no 'affine' attr (not a medical volume); {fmt} export "
                                     "needs voxel-to-RAS geometry")
    affine = np.asarray(affine, dtype=np.float64)
    if affine.shape != (4, 4) or not np.all(np.isfinite(affine)):
        raise InputError(store_path, f"store 'affine' attr is not a finite 4x4 matrix (shape {affine.shape})")
    return affine


def _volume_dims(image: xr.DataArray, store_path: Path, fmt: str) -> None:
    if image.dims not in (("z", "y", "x"), ("y", "x")):
        raise InputError(store_path, f"{fmt} export needs image dims (z, y, x) or (y, x), "
                                     f"not {image.dims}")


# ----------------------------------------------------------------------------------------------
# NIfTI


def export_nifti(store_path: Path, out: Path, group: str, overwrite: bool = False) -> Path:
    """NIfTI-1 (``.nii.gz`` / ``.nii``) with the store's RAS affine and exact values and dtype.

    The store's ``(z, y, x)`` (or ``(t, z, y, x)``) array is transposed to nibabel's ``(x, y, z)``
    (``(x, y, z, t)``, time step and units from the source NIfTI header when there was one): the affine maps
    voxel ``(i, j, k) = (x, y, z)`` index to RAS mm, in both. The whole volume is held in memory
    once (NIfTI is written in one piece).
    """
    import nibabel as nib

    name = out.name.lower()
    if not (name.endswith(".nii.gz") or name.endswith(".nii")):
        raise InputError(out, "NIfTI output must end with .nii.gz or .nii")
    ds = open_store(store_path, group)
    image = _image(ds, store_path, group, "nifti")
    affine = _affine(ds, store_path, "nifti")
    if image.dims != ("t", "z", "y", "x"):
        _volume_dims(image, store_path, "nifti")
    data = load_checked(ds, store_path, "image")
    if data.ndim == 2:
        data = data[None]
    if data.dtype == bool:
        data = data.astype(np.uint8)
    elif data.dtype == np.float16:
        data = data.astype(np.float32)
    xyz = np.ascontiguousarray(data.transpose(tuple(range(data.ndim))[::-1]))  # (t,)z,y,x -> x,y,z(,t)
    img = nib.Nifti1Image(xyz, affine)
    img.header.set_data_dtype(xyz.dtype)
    time_units = "unknown"
    if xyz.ndim == 4:
        source = attrs_json(ds, "nifti") or {}
        pixdim = source.get("pixdim") if isinstance(source, dict) else None
        units = source.get("xyzt_units") if isinstance(source, dict) else None
        step = float(pixdim[4]) if pixdim and len(pixdim) > 4 else (
            float(np.diff(image["t"].values[:2])[0]) if "t" in image.coords and image.sizes["t"] > 1 else 1.0)
        img.header.set_zooms((*img.header.get_zooms()[:3], step))
        time_units = units[1] if units and units[1] in ("sec", "msec", "usec") else "unknown"
    img.header.set_xyzt_units("mm", time_units)
    img.header["descrip"] = f"scorerecon export of {Path(store_path).name}"[:79].encode()
    record = provenance(store_path, ds, group, "nifti")
    record["affine"] = affine.tolist()
    # the provenance record also travels inside the file, as a JSON header extension (see bids_sidecar)
    img.header.extensions.append(nib.nifti1.Nifti1Extension("comment", json.dumps(record).encode()))
    sidecar = out.with_name(out.name + ".json")
    bids = out.with_name(re.sub(r"\.nii(\.gz)?$", "", out.name, flags=re.IGNORECASE) + ".json")
    with _atomic_outputs(out, sidecar, bids, overwrite=overwrite,
                         protect=protected_paths(store_path, ds)) as (stage, stage_json, stage_bids):
        img.to_filename(stage)
        stage_json.write_text(json.dumps(record, indent=2) + "\n")
        stage_bids.write_text(json.dumps(bids_sidecar(record), indent=2) + "\n")
    return out


def bids_sidecar(record: dict[str, Any]) -> dict[str, Any]:
    """A BIDS-derivatives sidecar (``<stem>.json``) for a NIfTI export: GeneratedBy, Sources.

    NIfTI has no registered extension code for generic JSON (nibabel's table has 42 and 44 for
    Quantiphyse and NIfTI-MRS), so the header extension holding ``record`` uses code 6
    ("comment"), text that any reader can print and ``Nifti1Extension.json()`` decodes. BIDS wants
    ``Sources`` as BIDS URIs; the sources here are usually not in a BIDS dataset, so they are
    ``file://`` URIs of the source store and files, with their sha256 in ``SourceSHA256``.
    """
    sources = [Path(record["source_store"]).as_uri()]
    sources += [Path(s["path"]).as_uri() for s in record["source_files"] if s.get("path")]
    return {
        "Description": f"scorerecon export of store group {record['group']}",
        "GeneratedBy": [{"Name": "scorerecon", "Version": __version__,
                         "Description": record["exported_by"],
                         "CodeURL": "https://pypi.org/project/scorerecon/"}],
        "Sources": sources,
        "SourceSHA256": {Path(s["path"]).as_uri(): s["sha256"] for s in record["source_files"] if s.get("path")},
    }


# ----------------------------------------------------------------------------------------------
# GeoTIFF (COG)


def export_geotiff(store_path: Path, out: Path, group: str, overwrite: bool = False) -> Path:
    """Cloud-Optimized GeoTIFF of a ``(band, y, x)`` group: same CRS, transform, dtype, nodata.

    Band descriptions are the band names; provenance goes into ``SCORERECON_*`` metadata tags.
    Written with GDAL's COG driver (DEFLATE + predictor, 512-pixel tiles, overviews down to one
    tile); the raster is held in memory once while GDAL builds the COG.
    """
    ds = open_store(store_path, group)
    image = _image(ds, store_path, group, "geotiff")
    if ds.rio.crs is None:
        raise InputError(store_path, f"group {group!r} has no CRS (not georeferenced); geotiff export "
                                     "needs one (use --format png or nifti)")
    if image.dims == ("y", "x"):
        image = image.expand_dims("band")
    if image.dims != ("band", "y", "x"):
        raise InputError(store_path, f"geotiff export needs image dims (band, y, x), not {image.dims}")
    values = load_checked(ds, store_path, "image").reshape(image.shape)
    if values.dtype == bool:
        values = values.astype(np.uint8)
    names = [str(b) for b in image["band"].values] if "band" in image.coords else \
        [f"B{i:02d}" for i in range(1, image.sizes["band"] + 1)]
    raster = xr.DataArray(values, dims=("band", "y", "x"),
                          coords={"band": np.arange(1, len(names) + 1), "y": image["y"].values,
                                  "x": image["x"].values})
    raster.attrs["long_name"] = tuple(names)
    for key in ("scales", "offsets"):
        if key in image.attrs:
            raster.attrs[key] = tuple(float(v) for v in image.attrs[key])
    raster = raster.rio.write_crs(ds.rio.crs).rio.write_transform(ds.rio.transform())
    nodata = image.attrs.get("nodata", image.rio.nodata)
    if nodata is not None:
        raster = raster.rio.write_nodata(float(nodata) if isinstance(nodata, str) else nodata,
                                         encoded=False)
    record = provenance(store_path, ds, group, "geotiff")
    when = datetime.datetime.now(datetime.UTC)
    tags = {
        # processing tags: baseline TIFF Software/DateTime, plus the full record in SCORERECON_*
        "TIFFTAG_SOFTWARE": f"scorerecon {__version__}",
        "TIFFTAG_DATETIME": when.strftime("%Y:%m:%d %H:%M:%S"),
        "PROCESSING_SOFTWARE": f"scorerecon {__version__}",
        "PROCESSING_DATETIME": when.isoformat(),
        "PROCESSING_LINEAGE": f"{record['exported_by']} of group {group} of store {Path(store_path).name}",
        "SCORERECON_EXPORTED_BY": record["exported_by"],
        "SCORERECON_SOURCE_STORE": record["source_store"],
        "SCORERECON_GROUP": group,
        "SCORERECON_SOURCE_FILES": json.dumps(record["source_files"]),
    }
    from scorerecon.modalities.io.stac import item_path_for, write_item

    item_path = item_path_for(out)
    with _atomic_outputs(out, item_path, overwrite=overwrite,
                         protect=protected_paths(store_path, ds)) as (stage, stage_item):
        raster.rio.to_raster(stage, driver="COG", tags=tags, compress="DEFLATE", predictor="YES",
                             blocksize=512, overviews="AUTO", recalc_transform=False)
        write_item(stage, stage_item, record, when, asset_name=out.name,
                   acquired=ds.attrs.get("datetime") or ds.attrs.get("acquisition_datetime"))
    return out


# ----------------------------------------------------------------------------------------------
# PNG


def _png_mapping(image: xr.DataArray, store_path: Path, window: tuple[float, float] | None,
                 bits: int) -> dict[str, Any]:
    """How values of one group become PNG pixels (see the module docstring)."""
    dtype = image.dtype
    if dtype == np.uint8 or dtype == np.uint16:
        return {"kind": "exact", "dtype": dtype}
    if dtype.kind == "b":
        return {"kind": "bool", "dtype": np.dtype(np.uint8)}
    if window is None:
        lo, hi, _ = _finite_range(image, store_path)  # NaN -> 0, +-Inf clipped (module docstring)
        if np.issubdtype(dtype, np.integer) and hi - lo <= 65535:
            return {"kind": "offset", "dtype": np.dtype(np.uint16), "offset": int(lo)}
        window = (lo, hi)
    lo, hi = float(window[0]), float(window[1])
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise InputError(store_path, "image has no finite values to scale into a PNG")
    if bits not in (8, 16):
        raise InputError(None, f"--bits must be 8 or 16, not {bits}")
    return {"kind": "window", "dtype": np.dtype(np.uint8 if bits == 8 else np.uint16),
            "window": [lo, hi], "bits": bits}


def _to_png_pixels(values: np.ndarray, mapping: dict[str, Any]) -> np.ndarray:
    kind = mapping["kind"]
    if kind == "exact":
        return values
    if kind == "bool":
        return values.astype(np.uint8) * 255
    if kind == "offset":
        return (values.astype(np.int64) - mapping["offset"]).astype(np.uint16)
    lo, hi = mapping["window"]
    top = 2 ** mapping["bits"] - 1
    scaled = (values.astype(np.float64) - lo) * (top / (hi - lo) if hi > lo else 0.0)
    scaled = np.nan_to_num(scaled, nan=0.0, posinf=top, neginf=0.0)
    return np.clip(np.rint(scaled), 0, top).astype(mapping["dtype"])


def _write_png(path: Path, pixels: np.ndarray, text: str) -> None:
    """One PNG from ``(y, x)`` or ``(y, x, bands)``; 16-bit colour goes through GDAL."""
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[..., 0]
    if pixels.dtype == np.uint16 and pixels.ndim == 3:
        # Pillow cannot write 16-bit colour PNG; GDAL can, with its metadata as a tEXt chunk
        import warnings

        import rasterio
        from rasterio.errors import NotGeoreferencedWarning

        with warnings.catch_warnings(), rasterio.Env(GDAL_PAM_ENABLED="NO"):
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(path, "w", driver="PNG", width=pixels.shape[1], height=pixels.shape[0],
                               count=pixels.shape[2], dtype="uint16", WRITE_METADATA_AS_TEXT="YES") as dst:
                dst.write(np.moveaxis(pixels, -1, 0))
                dst.update_tags(scorerecon=text)
        return
    info = PngInfo()
    info.add_itxt("scorerecon", text)
    # Pillow infers the mode: uint8 (y, x) L, (y, x, 2|3|4) LA/RGB/RGBA; uint16 (y, x) I;16
    Image.fromarray(pixels).save(path, format="PNG", pnginfo=info)


def _emit_png(stage: Path, name: str, ds: xr.Dataset, selection: dict[str, int], store_path: Path,
              mapping: dict[str, Any], text: str) -> None:
    """Read one image/band/slice (corrupt chunk -> InputError), map it, write ``name.png``."""
    sub = ds[["image"]].isel(selection) if selection else ds[["image"]]
    values = load_checked(sub, store_path, "image")
    if values.ndim == 3:  # (band, y, x) -> (y, x, band)
        values = np.moveaxis(values, 0, -1)
    _write_png(stage / f"{name}.png", _to_png_pixels(values, mapping), text)


def export_png(store_path: Path, out: Path, groups: list[str], overwrite: bool = False,
               window: tuple[float, float] | None = None, bits: int = 16) -> Path:
    """A folder of PNGs: one per colour image, per band of other multi-band images, per z slice.

    File names: ``<group>.png`` (``image.png`` for the root group) for a grey/colour image,
    ``<group>_<band>.png`` per band otherwise, ``<group>_z0000.png`` per slice of a volume.
    """
    datasets = [open_store(store_path, group) for group in groups]
    with _atomic_outputs(out, overwrite=overwrite, protect=protected_paths(store_path, *datasets),
                         directory=True) as (stage,):
        stage.mkdir()
        for group in groups:
            ds = open_store(store_path, group)
            image = _image(ds, store_path, group, "png")
            base = "image" if group == ROOT else re.sub(r"[^A-Za-z0-9_.-]+", "_", group)
            mapping = _png_mapping(image, store_path, window, bits)
            record = provenance(store_path, ds, group, "png")
            record["mapping"] = {k: v for k, v in mapping.items() if k != "dtype"}
            record["mapping"]["source_dtype"] = str(image.dtype)

            dims = image.dims
            if dims == ("y", "x"):
                _emit_png(stage, base, ds, {}, store_path, mapping, json.dumps(record))
            elif dims == ("band", "y", "x"):
                bands = tuple(str(b) for b in image["band"].values) if "band" in image.coords else ()
                if bands in COLOUR_BANDS:
                    _emit_png(stage, base, ds, {}, store_path, mapping, json.dumps(record))
                else:
                    for index, band in enumerate(bands or range(image.sizes["band"])):
                        _emit_png(stage, f"{base}_{band}", ds, {"band": index}, store_path, mapping,
                                  json.dumps({**record, "band": str(band)}))
            elif dims == ("z", "y", "x"):
                for k in range(image.sizes["z"]):
                    _emit_png(stage, f"{base}_z{k:04d}", ds, {"z": k}, store_path, mapping,
                              json.dumps({**record, "z": k}))
            else:
                raise InputError(store_path, f"png export needs dims (y, x), (band, y, x) or (z, y, x), "
                                             f"not {dims}")
    return out


# ----------------------------------------------------------------------------------------------
# DICOM


def _ds_number(value: float) -> str:
    """A DICOM Decimal String (at most 16 characters) for ``value``."""
    from pydicom.valuerep import format_number_as_ds

    return format_number_as_ds(float(value))


def dicom_encoding(image: xr.DataArray, store_path: Path) -> dict[str, Any]:
    """Choose stored dtype and RescaleSlope/Intercept so values round-trip (see module docstring)."""
    lo, hi, bad = _finite_range(image, store_path)
    if bad:
        raise InputError(store_path, f"{bad} non-finite (NaN/Inf) value(s) of {image.size} cannot be stored in "
                                     "DICOM; export NIfTI (keeps them) or PNG (NaN -> 0)")
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise InputError(store_path, "image has no finite values to encode as DICOM")
    if np.issubdtype(image.dtype, np.integer) or image.dtype == bool:
        if lo >= 0 and hi <= 65535:
            return {"dtype": np.dtype(np.uint16), "slope": "1", "intercept": "0", "exact": True}
        if lo >= -32768 and hi <= 32767:
            return {"dtype": np.dtype(np.int16), "slope": "1", "intercept": "0", "exact": True}
        if hi - lo <= 65535:
            return {"dtype": np.dtype(np.uint16), "slope": "1", "intercept": _ds_number(lo), "exact": True}
    # float data (or integers too wide for 16 bits): linear map onto int16 [-32767, 32767]
    intercept = _ds_number((hi + lo) / 2.0)
    slope = _ds_number((hi - lo) / 65534.0) if hi > lo else "1"
    if float(slope) == 0.0:
        slope = "1"
    return {"dtype": np.dtype(np.int16), "slope": slope, "intercept": intercept, "exact": False}


def _encode_slice(values: np.ndarray, encoding: dict[str, Any]) -> np.ndarray:
    slope, intercept = float(encoding["slope"]), float(encoding["intercept"])
    if encoding["exact"]:
        return (values.astype(np.int64) - int(round(intercept))).astype(encoding["dtype"])
    stored = np.rint((np.nan_to_num(values.astype(np.float64), nan=intercept) - intercept) / slope)
    return np.clip(stored, -32767, 32767).astype(np.int16)


_PATIENT_STUDY_KEYWORDS = (
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "PatientAge", "PatientWeight",
    "IssuerOfPatientID", "StudyInstanceUID", "StudyDate", "StudyTime", "StudyID", "AccessionNumber",
    "ReferringPhysicianName", "StudyDescription", "FrameOfReferenceUID", "PositionReferenceIndicator",
    "InstitutionName", "BodyPartExamined", "PatientPosition",
    # MR / CT acquisition descriptors that those IODs require (copied when the source had them)
    "ScanningSequence", "SequenceVariant", "ScanOptions", "MRAcquisitionType", "RepetitionTime",
    "EchoTime", "EchoTrainLength", "MagneticFieldStrength", "KVP",
)


def _source_dicom_tags(ds: xr.Dataset) -> dict[str, Any]:
    """Patient/study/frame-of-reference tags kept from a DICOM source (flat or nested attrs)."""
    tags = attrs_json(ds, "dicom")
    if not isinstance(tags, dict):
        return {}
    flat: dict[str, Any] = {}
    for key, value in tags.items():
        if isinstance(value, dict):
            flat.update({k: v for k, v in value.items() if not isinstance(v, dict)})
        else:
            flat[key] = value
    return flat


def slice_geometry(affine: np.ndarray, k: int) -> dict[str, list[str] | str]:
    """DICOM Image Plane attributes (LPS) of slice ``k`` of a store with RAS ``affine``.

    Store dims are ``(z, y, x)`` and the affine maps index ``(x, y, z)``: column ``i`` = x steps
    along a row (first IOP triplet), row ``j`` = y steps down a column (second triplet).
    """
    lps = LPS_FROM_RAS @ np.asarray(affine, dtype=np.float64)
    col_step, row_step, slice_step = lps[:3, 0], lps[:3, 1], lps[:3, 2]
    col_spacing, row_spacing = np.linalg.norm(col_step), np.linalg.norm(row_step)
    position = lps[:3, 3] + k * slice_step
    row_cosines, col_cosines = col_step / col_spacing, row_step / row_spacing
    normal = np.cross(row_cosines, col_cosines)
    return {
        "ImagePositionPatient": [_ds_number(v) for v in position],
        "ImageOrientationPatient": [_ds_number(v) for v in (*row_cosines, *col_cosines)],
        "PixelSpacing": [_ds_number(row_spacing), _ds_number(col_spacing)],
        "SliceThickness": _ds_number(np.linalg.norm(slice_step)),
        "SliceLocation": _ds_number(float(np.dot(position, normal))),
    }


def export_dicom(store_path: Path, out: Path, group: str, overwrite: bool = False,
                 deidentify: bool = False) -> Path:
    """A DICOM series folder (``IM00001.dcm``, ... one file per z slice) of a medical volume.

    A derived series in the source study: new SeriesInstanceUID / SOPInstanceUIDs; Study,
    FrameOfReference and patient tags kept from ``attrs["dicom"]`` when the store came from
    DICOM, new ones otherwise. SOP class: CT or MR Image Storage for those modalities
    (``attrs["modality"]`` or the source's Modality), Secondary Capture otherwise; ImageType
    ``DERIVED\\SECONDARY``. Geometry per slice from the RAS affine, converted to LPS. Each slice
    references its source instance(s) (SourceImageSequence, ReferencedSeriesSequence) and names
    scorerecon in ContributingEquipmentSequence (:mod:`~scorerecon.modalities.io.dicom_derived`).
    ``deidentify`` applies the PS3.15 basic profile to every slice (new UIDs, no patient
    identifiers, no private provenance block). Slices are read and written one at a time.
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian, generate_uid

    from scorerecon.modalities.io import dicom_derived

    ds = open_store(store_path, group)
    image = _image(ds, store_path, group, "dicom")
    affine = _affine(ds, store_path, "dicom")
    _volume_dims(image, store_path, "dicom")
    if image.dims == ("y", "x"):
        image = image.expand_dims("z")
    encoding = dicom_encoding(image, store_path)
    source = _source_dicom_tags(ds)
    modality = str(ds.attrs.get("modality") or source.get("Modality") or "OT").upper()
    sop_class = {"CT": CT_IMAGE_STORAGE, "MR": MR_IMAGE_STORAGE}.get(modality, SECONDARY_CAPTURE_STORAGE)
    if sop_class == SECONDARY_CAPTURE_STORAGE:
        modality = "OT" if modality not in ("OT", "XC", "SC") else modality
    record = provenance(store_path, ds, group, "dicom")
    series_uid = generate_uid()
    now = datetime.datetime.now()
    today, time_now = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    new_study = not source.get("StudyInstanceUID")
    shared = {
        "StudyInstanceUID": source.get("StudyInstanceUID") or generate_uid(),
        "FrameOfReferenceUID": source.get("FrameOfReferenceUID") or generate_uid(),
        "PatientName": source.get("PatientName", ""),
        "PatientID": source.get("PatientID", "scorerecon"),
        "PatientBirthDate": source.get("PatientBirthDate", ""),
        "PatientSex": source.get("PatientSex", ""),
        "StudyDate": source.get("StudyDate", today if new_study else ""),
        "StudyTime": source.get("StudyTime", time_now if new_study else ""),
        "StudyID": source.get("StudyID", "1" if new_study else ""),
        "AccessionNumber": source.get("AccessionNumber", ""),
        "ReferringPhysicianName": source.get("ReferringPhysicianName", ""),
        "PositionReferenceIndicator": source.get("PositionReferenceIndicator", ""),
        "Laterality": source.get("Laterality", ""),
    }
    if sop_class != SECONDARY_CAPTURE_STORAGE:
        shared["PatientPosition"] = source.get("PatientPosition", "")
    image_type = {CT_IMAGE_STORAGE: ["DERIVED", "SECONDARY", "AXIAL"],
                  MR_IMAGE_STORAGE: ["DERIVED", "SECONDARY", "OTHER"]}.get(sop_class, ["DERIVED", "SECONDARY"])
    units = str(image.attrs.get("units", "")).upper()
    for keyword in _PATIENT_STUDY_KEYWORDS:
        if keyword in source and keyword not in shared:
            shared[keyword] = source[keyword]
    n_slices = image.sizes["z"]
    geometry = [slice_geometry(affine, k) for k in range(n_slices)]
    references = dicom_derived.source_references(
        source, [[float(v) for v in g["ImagePositionPatient"]] for g in geometry])
    lo_hi = (np.iinfo(encoding["dtype"]).min, np.iinfo(encoding["dtype"]).max)

    with _atomic_outputs(out, overwrite=overwrite, protect=protected_paths(store_path, ds),
                         directory=True) as (stage,):
        stage.mkdir()
        for k in range(n_slices):
            values = load_checked(ds[["image"]].isel(z=k) if "z" in ds["image"].dims else ds[["image"]],
                                  store_path, "image")
            pixels = _encode_slice(values, encoding)
            meta = FileMetaDataset()
            meta.MediaStorageSOPClassUID = sop_class
            meta.MediaStorageSOPInstanceUID = generate_uid()
            meta.TransferSyntaxUID = ExplicitVRLittleEndian
            meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
            dcm = Dataset()
            dcm.file_meta = meta
            dcm.SOPClassUID = sop_class
            dcm.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
            dcm.SpecificCharacterSet = "ISO_IR 192"
            for keyword, value in shared.items():
                setattr(dcm, keyword, value)
            dcm.Modality = modality
            dcm.SeriesInstanceUID = series_uid
            dcm.SeriesNumber = 9001
            dcm.InstanceNumber = k + 1
            dcm.SeriesDescription = "scorerecon export"
            dcm.SeriesDate, dcm.SeriesTime = today, time_now
            dcm.ContentDate, dcm.ContentTime = today, time_now
            dcm.ImageType = image_type
            dcm.DerivationDescription = f"scorerecon export of {Path(store_path).name} group {group}"[:1024]
            dcm.Manufacturer = "scorerecon"  # the equipment that made this derived series
            dcm.SoftwareVersions = __version__
            if sop_class == SECONDARY_CAPTURE_STORAGE:
                dcm.ConversionType = "WSD"
                dcm.PatientOrientation = ""
                dcm.RescaleType = units or "US"  # required with a rescale; "US" = unspecified
            elif sop_class == CT_IMAGE_STORAGE:
                dcm.KVP = shared.get("KVP", "")
                dcm.AcquisitionNumber = ""
                if units == "HU":
                    dcm.RescaleType = "HU"
            else:
                dcm.RepetitionTime = shared.get("RepetitionTime", "")
                dcm.EchoTime = shared.get("EchoTime", "")
                dcm.ScanningSequence = shared.get("ScanningSequence", "RM")
                dcm.SequenceVariant = shared.get("SequenceVariant", "NONE")
                dcm.ScanOptions = shared.get("ScanOptions", "")
                dcm.MRAcquisitionType = shared.get("MRAcquisitionType", "")
                dcm.EchoTrainLength = shared.get("EchoTrainLength", "")
            for keyword, value in geometry[k].items():
                setattr(dcm, keyword, value)
            dicom_derived.add_derivation(dcm, references[k], source, dcm.DerivationDescription, now)
            dcm.SpacingBetweenSlices = dcm.SliceThickness
            dcm.set_pixel_data(pixels, photometric_interpretation="MONOCHROME2", bits_stored=16)
            dcm.RescaleSlope = encoding["slope"]
            dcm.RescaleIntercept = encoding["intercept"]
            phys_lo, phys_hi = (float(v) * float(encoding["slope"]) + float(encoding["intercept"])
                                for v in (max(int(pixels.min()), lo_hi[0]), min(int(pixels.max()), lo_hi[1])))
            dcm.WindowCenter = _ds_number((phys_lo + phys_hi) / 2)
            dcm.WindowWidth = _ds_number(max(phys_hi - phys_lo, 1.0))
            block = dcm.private_block(0x0011, "scorerecon", create=True)
            block.add_new(0x01, "UT", json.dumps(record))
            if deidentify:
                dicom_derived.deidentify(dcm, now)
            dcm.save_as(stage / f"IM{k + 1:05d}.dcm", enforce_file_format=True)
    return out


# ----------------------------------------------------------------------------------------------
# entry point


def export_store(store_path: str | os.PathLike, fmt: str, out: str | os.PathLike,
                 group: str | None = None, overwrite: bool = False, **opts: Any) -> Path:
    """Export one group of a complete store to ``fmt`` (``nifti``, ``geotiff``, ``png``, ``dicom``, ``omezarr``).

    ``group`` ``None`` takes the store's only group; for ``png`` it takes every group (one image
    store holds one group per image). PNG options: ``window=(lo, hi)``, ``bits=8|16``.
    DICOM option: ``deidentify=True`` (PS3.15 basic profile).
    Raises :class:`InputError` for a missing, incomplete or corrupt store, an unknown group, an
    existing output without ``overwrite``, or a format that cannot represent the group.
    """
    store_path, out = Path(store_path), Path(out)
    if fmt not in FORMATS:
        raise InputError(None, f"unknown export format {fmt!r} (choose from {', '.join(FORMATS)})")
    groups = store_groups(store_path) if fmt == "png" and group is None else [_resolve_group(store_path, group)]
    # before any pixel is read: is the output path usable, and may --overwrite replace what is there?
    check_output(out, "dir" if fmt in DIRECTORY_FORMATS else "file", overwrite,
                 protected_paths(store_path, *(open_store(store_path, g) for g in groups)))
    if fmt == "png":
        return export_png(store_path, out, groups, overwrite=overwrite, window=opts.get("window"),
                          bits=int(opts.get("bits") or 16))
    chosen = groups[0]
    if fmt == "dicom":
        return export_dicom(store_path, out, chosen, overwrite=overwrite, deidentify=bool(opts.get("deidentify")))
    if fmt == "omezarr":
        from scorerecon.modalities.io.omezarr import export_omezarr

        return export_omezarr(store_path, out, chosen, overwrite=overwrite)
    exporter = {"nifti": export_nifti, "geotiff": export_geotiff}[fmt]
    return exporter(store_path, out, chosen, overwrite=overwrite)
