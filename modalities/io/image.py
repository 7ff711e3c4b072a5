"""Plain image reader (PNG, JPEG, TIFF without georeferencing, and other Pillow formats).

Layout, one for every image whatever its colour type, so downstream code has a single case:

* main variable ``image`` with dims ``("band", "y", "x")``; the ``band`` coordinate names the
  channels: ``["R", "G", "B"]`` or ``["R", "G", "B", "A"]`` for colour, ``["L"]`` for grey,
  ``["L", "A"]`` for grey with alpha. ``y`` runs down the image (row 0 is the top row), as in
  the file; EXIF orientation is recorded but not applied, so pixels are exactly the file's.
* the file's dtype kept exactly: ``uint8``, ``uint16`` (16-bit PNG, grey or colour, and TIFF),
  and whatever a TIFF holds (``int16``, ``float32``, ...). Palette images are expanded to RGB(A),
  1-bit images to ``uint8`` 0/255 (a palette index is not an intensity), and CMYK / YCbCr / LAB
  files converted to RGB by Pillow (the only cases where stored values differ from the file's).
* several images: one group per image, named after the file stem (``kodim01``, ...), because
  real collections mix sizes and orientations (Kodak has portrait frames) and stacking would
  force resampling or padding; a single image is the root group ``"/"``.

Decoding is lazy: one ``dask.delayed`` decode per file (PNG and JPEG cannot be decoded by
window), then chunked ``(1, chunk, chunk)`` for the store, so a write holds one image at a time.
Pillow decodes PNG/JPEG; 16-bit colour PNG goes through GDAL (Pillow reduces it to 8 bits);
TIFF goes through tifffile (any dtype, planar or interleaved). Failures name the file.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np
import xarray as xr
from dask.base import tokenize
from PIL import Image, UnidentifiedImageError

from scorerecon.errors import InputError
from scorerecon.modalities.io.store import provenance_attrs

READER = "image"
READER_VERSION = "1"
DEFAULT_CHUNK = 512

_BANDS_BY_MODE = {
    "L": ["L"], "LA": ["L", "A"], "RGB": ["R", "G", "B"], "RGBA": ["R", "G", "B", "A"],
    "I;16": ["L"], "I;16L": ["L"], "I;16B": ["L"], "I": ["L"], "F": ["L"],
}
_CONVERT = {"1": "L", "P": "RGB", "PA": "RGBA", "CMYK": "RGB", "YCbCr": "RGB", "LAB": "RGB",
            "HSV": "RGB", "La": "LA", "RGBa": "RGBA", "RGBX": "RGB"}
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_TIFF_SUFFIXES = (".tif", ".tiff")


def _png_header(path: Path) -> tuple[int, int] | None:
    """``(bit_depth, colour_type)`` from a PNG's IHDR, or ``None`` if not a PNG."""
    with open(path, "rb") as handle:
        head = handle.read(26)
    if len(head) < 26 or not head.startswith(_PNG_SIGNATURE):
        return None
    return head[24], head[25]


def _plan_pillow(path: Path) -> dict[str, Any]:
    """Decide how to decode one Pillow-readable file, from its header only."""
    try:
        with Image.open(path) as im:
            mode, size, fmt = im.mode, im.size, im.format
            frames = getattr(im, "n_frames", 1)
            has_transparency = "transparency" in im.info
            # PNG's getexif() decodes the whole image to find a trailing eXIf chunk: skip it
            orientation = None if fmt == "PNG" else im.getexif().get(0x0112)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise InputError(path, f"not a readable image ({type(exc).__name__}: {exc})") from None
    if frames > 1:
        raise InputError(path, f"animated / multi-frame image ({frames} frames) is not supported; "
                               "export the frames as separate files")
    width, height = size
    header = _png_header(path) if fmt == "PNG" else None
    if header and header[0] == 16 and header[1] in (2, 4, 6):
        # 16-bit RGB / grey+alpha / RGBA: Pillow would drop to 8 bits; GDAL keeps them
        names = {2: ["R", "G", "B"], 4: ["L", "A"], 6: ["R", "G", "B", "A"]}[header[1]]
        return {"backend": "gdal", "bands": names, "shape": (len(names), height, width),
                "dtype": np.dtype("uint16"), "format": fmt, "mode": f"{mode};16"}
    target = _CONVERT.get(mode, mode)
    if target == "RGB" and mode == "P" and has_transparency:
        target = "RGBA"
    if target not in _BANDS_BY_MODE:
        raise InputError(path, f"unsupported image mode {mode!r}")
    dtype = {"L": "uint8", "LA": "uint8", "RGB": "uint8", "RGBA": "uint8", "I": "int32",
             "F": "float32"}.get(target, "uint16")
    if header and header[0] == 16 and header[1] == 0:
        dtype = "uint16"  # 16-bit grey PNG, whichever of "I" / "I;16" Pillow opens it as
    bands = _BANDS_BY_MODE[target]
    plan = {"backend": "pillow", "bands": bands, "shape": (len(bands), height, width),
            "dtype": np.dtype(dtype), "format": fmt, "mode": mode, "convert": target}
    if orientation not in (None, 1):
        plan["exif_orientation"] = int(orientation)
    return plan


def _plan_tiff(path: Path) -> dict[str, Any]:
    """Decide how to decode a plain TIFF with tifffile: 2-D grey or one colour image."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            axes, shape, dtype = series.axes, tuple(series.shape), series.dtype
            photometric = tif.pages[0].photometric
            extrasamples = tuple(tif.pages[0].extrasamples or ())
            pages = len(tif.pages)
    except Exception as exc:
        raise InputError(path, f"not a readable TIFF ({type(exc).__name__}: {exc})") from None
    rgb = photometric == tifffile.PHOTOMETRIC.RGB
    if axes == "YX":
        bands, layout = ["L"], "YX"
    elif axes in ("YXS", "SYX"):
        samples = shape[axes.index("S")]
        if rgb and samples in (3, 4):
            bands = ["R", "G", "B", "A"][:samples]
        elif not rgb and samples == 2 and extrasamples:
            bands = ["L", "A"]
        else:
            raise InputError(path, f"unsupported TIFF samples ({samples} per pixel, photometric "
                                   f"{photometric.name if photometric is not None else None})")
        layout = axes
    else:
        raise InputError(path, f"unsupported TIFF layout (axes {axes!r}, shape {shape}, {pages} pages); "
                               "the image reader takes one 2-D grey or colour image")
    height, width = shape[axes.index("Y")], shape[axes.index("X")]
    return {"backend": "tifffile", "bands": bands, "shape": (len(bands), height, width),
            "dtype": np.dtype(dtype), "format": "TIFF", "mode": axes, "layout": layout}


def _plan(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise InputError(path, "not a file")
    if path.suffix.lower() in _TIFF_SUFFIXES:
        return _plan_tiff(path)
    return _plan_pillow(path)


def _decode(path: Path, plan: dict[str, Any]) -> np.ndarray:
    """Decode one file into a ``(band, y, x)`` array of the planned shape and dtype."""
    try:
        if plan["backend"] == "pillow":
            with Image.open(path) as im:
                im.load()
                if im.mode != plan["convert"]:
                    im = im.convert(plan["convert"])
                array = np.asarray(im)
            array = array[None] if array.ndim == 2 else np.moveaxis(array, -1, 0)
        elif plan["backend"] == "gdal":
            import warnings

            import rasterio
            from rasterio.errors import NotGeoreferencedWarning

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", NotGeoreferencedWarning)  # a PNG has no geotransform
                src = rasterio.open(path)
            with src:
                array = src.read()
        else:
            import tifffile

            array = tifffile.imread(path, series=0)
            if plan["layout"] == "YX":
                array = array[None]
            elif plan["layout"] == "YXS":
                array = np.moveaxis(array, -1, 0)
    except InputError:
        raise
    except Exception as exc:
        raise InputError(path, f"cannot decode image ({type(exc).__name__}: {exc})") from None
    array = np.ascontiguousarray(array)
    if array.shape != plan["shape"]:
        raise InputError(path, f"decoded shape {array.shape} differs from the header's {plan['shape']}")
    return array.astype(plan["dtype"], copy=False)


def _group_name(path: Path) -> str:
    """A Zarr-safe group name from the file stem."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", path.stem).strip("._") or "image"


def _dataset(path: Path, plan: dict[str, Any], chunk: int) -> xr.Dataset:
    stamp = os.stat(path)
    token = tokenize(str(path.resolve()), stamp.st_mtime_ns, stamp.st_size)
    decoded = dask.delayed(_decode, pure=True, name=f"decode-{token}")(path, plan)
    data = da.from_delayed(decoded, shape=plan["shape"], dtype=plan["dtype"], name=f"image-{token}")
    data = data.rechunk((1, chunk, chunk))
    image = xr.DataArray(data, dims=("band", "y", "x"),
                         coords={"band": np.array(plan["bands"], dtype=object)}, name="image")
    ds = image.to_dataset()
    ds.attrs.update(provenance_attrs(READER, READER_VERSION, [path]))
    ds.attrs["color"] = "".join(plan["bands"])
    ds.attrs["source_format"] = plan["format"]
    ds.attrs["source_mode"] = plan["mode"]
    if "exif_orientation" in plan:
        ds.attrs["exif_orientation"] = plan["exif_orientation"]
    return ds


def read(paths: list[Path], chunks: int = DEFAULT_CHUNK, **options: Any) -> dict[str, xr.Dataset]:
    """Read plain images into lazy ``(band, y, x)`` datasets: ``"/"`` for one, one group each for several.

    ``chunks`` is the tile edge of the store chunks. Other options (``series=``) are ignored.
    Raises :class:`InputError` naming the file for anything that is not a decodable image, and
    for two files whose stems give the same group name.
    """
    paths = [Path(p) for p in paths]
    if not paths:
        raise InputError(None, "no image files given")
    plans = [(path, _plan(path)) for path in paths]
    if len(plans) == 1:
        path, plan = plans[0]
        return {"/": _dataset(path, plan, chunks)}
    groups: dict[str, xr.Dataset] = {}
    owners: dict[str, Path] = {}
    for path, plan in plans:
        name = _group_name(path)
        if name in owners:
            raise InputError(path, f"gives the same group name {name!r} as {owners[name]}; rename one")
        owners[name] = path
        groups[name] = _dataset(path, plan, chunks)
    return groups
