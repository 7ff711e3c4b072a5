"""Helpers shared by the workflow files (input resolution and target lists)."""

import glob
import importlib.util
from pathlib import Path

OUT = config.get("outdir", "results/demo")


def _package_root(package):
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise WorkflowError(f"package {package!r} is not installed (needed by the config's package_data)")
    return Path(list(spec.submodule_search_locations)[0])


def source_paths(name):
    """The files of one configured input, sorted (package data resolved without importing it)."""
    entry = config["inputs"][name]
    if "paths" in entry:
        return sorted(entry["paths"])
    root = _package_root(entry["package_data"]["package"])
    found = sorted(glob.glob(str(root / entry["package_data"]["glob"])))
    if not found:
        raise WorkflowError(f"input {name!r}: no files match {entry['package_data']['glob']!r} in {root}")
    return found


def ingest_targets():
    return [f"{OUT}/stores/{name}.zarr" for name in config["inputs"]]


def export_targets():
    return [
        f"{OUT}/exports/{name}/{fmt}"
        for name, entry in config["inputs"].items()
        for fmt in entry.get("export", [])
    ]


def sample_targets():
    samples = config.get("samples", {})
    return [f"{OUT}/samples/{ckpt}.png" for ckpt in samples.get("checkpoints", [])]
