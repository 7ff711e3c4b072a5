"""``scorerecon info``: what a store holds — groups, dims, shapes, chunks, geometry, provenance."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from scorerecon.modalities.io.store import open_store, store_groups

_GEOMETRY_KEYS = ("affine", "spacing", "crs", "transform", "modality", "orientation")


def describe(path: Path) -> dict:
    """A JSON-able summary of every group of a store."""
    summary = {"store": str(path), "groups": {}}
    for group in store_groups(path):
        ds = open_store(path, group)
        variables = {}
        for name, var in ds.data_vars.items():
            variables[str(name)] = {
                "dims": list(var.dims), "shape": list(var.shape), "dtype": str(var.dtype),
                "chunks": [list(map(int, c)) for c in var.chunks] if var.chunks else None,
            }
        geometry = {k: ds.attrs[k] for k in _GEOMETRY_KEYS if k in ds.attrs}
        if "spatial_ref" in ds.coords:
            geometry["crs"] = ds.rio.crs.to_string() if ds.rio.crs else None
            geometry["transform"] = list(ds.rio.transform())[:6]
        provenance = {k: ds.attrs[k] for k in ("reader", "reader_version", "scorerecon_version", "source_files")
                      if k in ds.attrs}
        summary["groups"][group] = {"variables": variables, "geometry": geometry, "provenance": provenance}
    return summary


def _run(args: argparse.Namespace) -> int:
    summary = describe(args.store)
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(f"store {summary['store']}")
    for group, info in summary["groups"].items():
        print(f"group {group}")
        for name, var in info["variables"].items():
            chunks = "x".join(str(c[0]) for c in var["chunks"]) if var["chunks"] else "-"
            print(f"  {name}: dims={tuple(var['dims'])} shape={tuple(var['shape'])} "
                  f"dtype={var['dtype']} chunks={chunks}")
        for key, value in info["geometry"].items():
            print(f"  {key}: {value}")
        prov = info["provenance"]
        if prov:
            print(f"  reader: {prov.get('reader')} {prov.get('reader_version', '')}")
            for src in prov.get("source_files", [])[:5]:
                print(f"  source: {src['path']} sha256={src['sha256'][:16]}...")
            extra = len(prov.get("source_files", [])) - 5
            if extra > 0:
                print(f"  ... and {extra} more source files")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("info", help="describe a store: dims, shapes, chunks, geometry, provenance")
    parser.add_argument("store", type=Path)
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.set_defaults(func=_run)
