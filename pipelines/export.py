"""``scorerecon export``: a store group into an archive format (NIfTI, COG GeoTIFF, PNG, DICOM).

A thin wrapper over :func:`scorerecon.modalities.io.export.export_store`: outputs appear
atomically (written under a hidden ``.partial-*`` name, renamed when complete) and carry the
source store and the sha256 of its source files; a store or format mismatch is one
``scorerecon: error:`` line.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from scorerecon.modalities.io.export import FORMATS, export_store
from scorerecon.pipelines.options import Window, output_path

_EPILOG = """\
formats:
  nifti    OUT.nii.gz (+ OUT.nii.gz.json provenance); needs a (z, y, x) image with an affine
  geotiff  OUT.tif, Cloud-Optimized GeoTIFF; needs a georeferenced (band, y, x) group (--group
           picks one resolution of a multi-resolution store)
  png      OUT/ folder: one PNG per image, per band or per z slice; uint8/uint16 kept exactly,
           other integers offset into uint16, floats scaled from --window (default min..max)
  dicom    OUT/ folder: one file per z slice, a derived series in the source study (source
           instances referenced, geometry from the affine); --deidentify: PS3.15 basic profile
  omezarr  OUT.ome.zarr: OME-Zarr 0.5 multiscale image (validated with ome-zarr-models)
"""


def _run(args: argparse.Namespace) -> int:
    out = export_store(args.store, args.format, args.output, group=args.group, overwrite=args.overwrite,
                       window=tuple(args.window) if args.window else None, bits=args.bits,
                       deidentify=args.deidentify)
    print(f"wrote {out}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``export`` sub-command to the ``scorerecon`` parser."""
    parser = subparsers.add_parser(
        "export", help="export a store group to NIfTI / COG GeoTIFF / PNG / DICOM / OME-Zarr",
        description="Export one group of a Zarr store to an archive format, with the store's geometry "
        "and provenance (source store, sha256 of its source files). Outputs appear only when complete.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("store", type=Path, help="input store (STORE.zarr)")
    parser.add_argument("--format", "-f", required=True, choices=FORMATS, help="output format")
    parser.add_argument("-o", "--output", type=output_path, required=True,
                        help="output file (nifti, geotiff) or folder")
    parser.add_argument("--group", help="store group to export (default: the only one; png: all)")
    parser.add_argument("--window", type=float, nargs=2, metavar=("LO", "HI"), action=Window,
                        help="png: value window mapped onto 0..2**bits-1 for float data")
    parser.add_argument("--bits", type=int, choices=(8, 16), default=16, help="png: bit depth of scaled data")
    parser.add_argument("--deidentify", action="store_true",
                        help="dicom: apply the DICOM PS3.15 basic de-identification profile")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
    parser.set_defaults(func=_run)
