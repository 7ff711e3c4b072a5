"""``scorerecon ingest``: read any supported source into a chunked Zarr v3 store.

Format detection is by extension (and, for TIFF, by whether a CRS is present); ``--reader``
overrides it. Each reader module in :mod:`scorerecon.modalities.io` exposes
``read(paths, **options) -> {group: xarray.Dataset}`` returning lazy (dask-backed) datasets, so
writing streams chunk by chunk. Sources are only ever opened for reading.
"""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path

import xarray as xr

from scorerecon.hardware import software_versions
from scorerecon.modalities.io.outputs import check_output
from scorerecon.modalities.io.store import COMPRESSIONS, write_store
from scorerecon.pipelines.errors import InputError
from scorerecon.pipelines.options import output_path
from scorerecon.pipelines.record import command_line

READERS = {
    "dicom": "scorerecon.modalities.io.dicom",
    "nifti": "scorerecon.modalities.io.nifti",
    "geotiff": "scorerecon.modalities.io.geotiff",
    "kspace": "scorerecon.modalities.io.kspace",
    "image": "scorerecon.modalities.io.image",
    "stac": "scorerecon.modalities.io.stac",
}

#: Options that pick part of a source, by the readers that take them: given for another reader they
#: would be ignored silently, so they are refused instead.
SELECTION_OPTIONS = {"dicom": ("series", "stack", "acquisition"), "stac": ("item",)}

_BY_SUFFIX = {
    ".dcm": "dicom", ".ima": "dicom",
    ".nii": "nifti", ".nii.gz": "nifti",
    ".jp2": "geotiff",
    ".dat": "kspace", ".cfl": "kspace", ".hdr": "kspace", ".h5": "kspace", ".npy": "kspace",
    ".png": "image", ".jpg": "image", ".jpeg": "image",
}


def _suffix(path: Path) -> str:
    name = path.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else path.suffix.lower()


def _tiff_kind(path: Path) -> str:
    import warnings

    import rasterio
    from rasterio.errors import NotGeoreferencedWarning

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            src = rasterio.open(path)
        with src:
            return "geotiff" if src.crs is not None else "image"
    except Exception:
        return "image"


def _looks_like_dicom(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            handle.seek(128)
            return handle.read(4) == b"DICM"
    except OSError:
        return False


def detect_reader(paths: list[Path]) -> str:
    """Pick the reader for a list of sources (all of one kind)."""
    kinds = set()
    for path in paths:
        if path.is_dir():
            kinds.add("dicom")
            continue
        suffix = _suffix(path)
        if suffix in (".tif", ".tiff"):
            kinds.add(_tiff_kind(path))
        elif suffix == ".json":
            from scorerecon.modalities.io.stac import is_stac_json

            if not is_stac_json(path):
                raise InputError(path, "JSON file is not a STAC catalog, collection or item")
            kinds.add("stac")
        elif suffix in _BY_SUFFIX:
            kinds.add(_BY_SUFFIX[suffix])
        elif _looks_like_dicom(path):
            kinds.add("dicom")
        else:
            raise InputError(path, f"unrecognised file type {suffix or '(no extension)'!r}; "
                                   f"pass --reader {{{','.join(READERS)}}}")
    if len(kinds) != 1:
        raise InputError(paths[0], f"sources mix several formats ({', '.join(sorted(kinds))}); ingest them separately")
    return kinds.pop()


def read_sources(paths: list[Path], reader: str | None = None, **options) -> dict[str, xr.Dataset]:
    """Read sources into lazy datasets keyed by store group."""
    if not paths:
        raise InputError(None, "no input files given")
    for path in paths:
        if not path.exists():
            raise InputError(path, "no such file or directory")
    reader = reader or detect_reader(paths)
    for name, value in options.items():
        takers = [r for r, names in SELECTION_OPTIONS.items() if name in names]
        if value is not None and takers and reader not in takers:
            raise InputError(paths[0], f"--{name} selects within {' or '.join(takers)} sources; this is a {reader} "
                                       "source (drop the option)")
    module = importlib.import_module(READERS[reader])
    groups = module.read(paths, **{k: v for k, v in options.items() if v is not None})
    return groups if isinstance(groups, dict) else {"/": groups}


def ingest(paths: list[Path], output: Path, reader: str | None = None, overwrite: bool = False,
           progress: bool = False, compression: str = "lz4", command: str | None = None, **options) -> Path:
    """Read ``paths`` and write them to the Zarr v3 store ``output`` atomically.

    The output is checked before anything is read: ``--overwrite`` never replaces a source, a
    folder holding one, or anything scorerecon did not write
    (:func:`~scorerecon.modalities.io.outputs.check_output`).
    """
    paths = [Path(p) for p in paths]
    check_output(output, "dir", overwrite, protect=paths)
    groups = read_sources(paths, reader=reader, **options)
    for ds in groups.values():  # with source_files (sha256): what `provenance verify` checks on its own
        ds.attrs.update({"command": command, "software": software_versions()} if command else
                        {"software": software_versions()})
    return write_store(groups, output, overwrite=overwrite, progress=progress, compression=compression,
                       protect=paths)


def _run(args: argparse.Namespace) -> int:
    out = ingest(args.sources, args.output, reader=args.reader, overwrite=args.overwrite,
                 progress=not args.quiet, compression=args.compression, series=args.series, item=args.item,
                 stack=args.stack, acquisition=args.acquisition, command=command_line(args))
    print(f"wrote {out}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "ingest", help="read DICOM / NIfTI / GeoTIFF / raw k-space / images / STAC catalogs into a Zarr v3 store",
        description="Read sources (never modified) into a chunked Zarr v3 store with geometry and "
        "provenance (sha256 of every source) in its attrs.")
    parser.add_argument("sources", nargs="+", type=Path, help="files or a DICOM folder")
    parser.add_argument("-o", "--output", type=output_path, required=True, help="output store (STORE.zarr)")
    parser.add_argument("--reader", choices=sorted(READERS), help="force a reader instead of detecting one")
    parser.add_argument("--series", help="DICOM SeriesInstanceUID to take when the sources hold several")
    parser.add_argument("--item", help="STAC item id to take from a catalog (default: all items, stacked)")
    parser.add_argument("--stack", help="DICOM StackID to take from an enhanced multi-frame file (default: every "
                        "stack/acquisition, one store group each)")
    parser.add_argument("--acquisition", type=int, help="DICOM FrameAcquisitionNumber (multi-frame) or "
                        "AcquisitionNumber (single-frame files) to take")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output store")
    parser.add_argument("--compression", choices=COMPRESSIONS, default="lz4",
                        help="chunk compressor: lz4 (default; fast, 1.2-2x smaller), zstd (smaller, ~3x "
                        "slower), none (fastest; I/O-bound ingest)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=_run)
