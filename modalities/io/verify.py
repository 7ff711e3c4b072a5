"""Verify one scorerecon output on its own, from the provenance it carries (no run folder needed).

``scorerecon provenance verify OUT`` checks a Snakemake run's output against the run's RO-Crate
(:func:`scorerecon.modalities.io.rocrate.verify`). An output of the plain CLI has no crate, but it
carries its own record, and this module checks that record:

stores (``ingest`` and ``reconstruct`` outputs, every group)
    * ``source_files`` (path, sha256, bytes: what ``ingest`` read) are hashed again;
    * ``input_stores`` (a reconstruction's inputs) are verified the same way in turn, each once;
    * the prior: ``checkpoint`` + ``checkpoint_sha256`` (the model card's weights digest) ->
      ``<checkpoint>/model.safetensors`` is hashed again;
    * the store's own data: every chunk of every array is read back through zarr, whose CRC32C
      codec rejects a changed byte (and a missing chunk file is refused when the store is opened);
    * ``command`` and ``software`` (versions), where the writer recorded them, are reported.
exports (``export --format nifti|geotiff|png|dicom|omezarr``)
    the record each format carries (NIfTI: the ``<out>.json`` sidecar; GeoTIFF: the
    ``SCORERECON_*`` tags; PNG: the ``scorerecon`` iTXt chunk; DICOM: the ``scorerecon`` private
    block; OME-Zarr: ``attributes["scorerecon"]``): its ``source_files`` are hashed again and
    its ``source_store`` is verified as above. First, the export's own bytes: every file the
    ``OUT.sha256`` manifest beside it lists is hashed again, and a folder export holding a file
    it did not write fails (:mod:`~scorerecon.modalities.io.manifest`; an export older than
    manifests is reported as unchecked).

A file that is recorded but no longer where it was recorded (moved, or on another machine)
cannot be hashed. It is reported as ``missing`` and does not fail the check. A file whose sha256
differs fails: an :class:`InputError` names it and gives both digests, which the CLI prints as one
line with a non-zero exit. The attribute names are those the writers already use
(``modalities/io/store.py`` ``provenance_attrs``, ``pipelines/record.py`` ``finish_output``,
``modalities/io/export.py`` ``provenance``): no second schema.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from scorerecon.errors import InputError
from scorerecon.modalities.io.manifest import check_manifest, manifest_path
from scorerecon.modalities.io.store import attrs_json, open_store, sha256_file, store_groups

__all__ = ["export_record", "verify_output"]


def _shown(path: Path) -> str:
    """A path as messages show it: relative to the current folder when under it."""
    try:
        return os.path.relpath(path, os.getcwd()) if path.resolve().is_relative_to(Path.cwd()) else str(path)
    except ValueError:
        return str(path)


class _Checker:
    """Walks what an output was made from, hashing each file once; collects the report lines."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.missing = 0
        self.hashed: set[str] = set()
        self.stores: set[str] = set()

    def file(self, path: str | None, expected: str | None, role: str, recorded_in: Path) -> None:
        if not path or not expected or expected == "pending":
            return
        source = Path(path)
        key = f"{source.resolve()}\t{expected}"
        if key in self.hashed:
            return
        self.hashed.add(key)
        if not source.exists():
            self.missing += 1
            self.lines.append(f"missing {expected[:16]} {path} ({role}: not there any more, cannot re-hash)")
            return
        actual = sha256_file(source)
        if actual != expected:
            raise InputError(_shown(source), f"{role} changed since {_shown(recorded_in)} was made: sha256 "
                                             f"{actual[:16]}... but it records {expected[:16]}... (modified or "
                                             "replaced)")
        self.lines.append(f"ok {expected[:16]} {_shown(source)} ({role})")

    def sources(self, records: Iterable[Any], recorded_in: Path) -> None:
        for record in records or []:
            if isinstance(record, dict):
                self.file(record.get("path"), record.get("sha256"), "source", recorded_in)

    def store(self, path: Path, role: str = "store") -> None:
        key = str(path.resolve())
        if key in self.stores:
            return
        self.stores.add(key)
        if not path.exists():
            self.missing += 1
            self.lines.append(f"missing {path} ({role}: not there any more, cannot verify)")
            return
        chunks = 0
        for index, group in enumerate(store_groups(path)):
            ds = open_store(path, group)
            self.sources(attrs_json(ds, "source_files"), path)
            checkpoint, weights_sha = ds.attrs.get("checkpoint"), ds.attrs.get("checkpoint_sha256")
            if checkpoint and weights_sha:
                weights = Path(checkpoint) / "model.safetensors" if Path(checkpoint).is_dir() else Path(checkpoint)
                self.file(str(weights), weights_sha, "prior weights", path)
            for item in attrs_json(ds, "input_stores") or []:
                if isinstance(item, dict) and item.get("path"):
                    self.store(Path(item["path"]), "input store")
            chunks += _read_every_chunk(ds, path, group)
            for key_name in ("command", "software") if index == 0 else ():
                value = attrs_json(ds, key_name)
                if isinstance(value, dict):
                    value = ", ".join(f"{k} {v}" for k, v in value.items())
                if value:
                    self.lines.append(f"{key_name}: {value} ({_shown(path)})")
        self.lines.append(f"ok data {_shown(path)} ({role}: {chunks} chunk(s) read back, CRC32C checked)")


def _read_every_chunk(ds: Any, path: Path, group: str) -> int:
    """Decode every chunk of every variable of one group (CRC32C verified by zarr); the chunk count."""
    import dask.array as da

    count = 0
    for name, var in {**ds.data_vars, **ds.coords}.items():
        data = var.data
        if not isinstance(data, da.Array):
            continue
        try:
            data.map_blocks(lambda block: block[:0], dtype=data.dtype).compute()
        except Exception as exc:  # zarr's codecs raise several types for a corrupted chunk
            raise InputError(_shown(path), f"group {group!r} variable {name!r}: a chunk does not decode "
                                           f"({type(exc).__name__}: {exc}): the store's data changed") from None
        count += data.npartitions
    return count


def export_record(path: Path) -> dict[str, Any] | None:
    """The provenance record an export carries (see the module docstring), or ``None``."""
    try:
        if path.is_file() and path.name.endswith((".nii", ".nii.gz")):
            sidecar = path.with_name(path.name + ".json")
            return json.loads(sidecar.read_text()) if sidecar.is_file() else None
        if path.is_file() and path.suffix.lower() in (".tif", ".tiff"):
            import rasterio

            with rasterio.open(path) as src:
                tags = src.tags()
            if "SCORERECON_SOURCE_STORE" not in tags:
                return None
            return {"source_store": tags["SCORERECON_SOURCE_STORE"],
                    "source_files": json.loads(tags.get("SCORERECON_SOURCE_FILES", "[]"))}
        if path.is_dir() and (path / "zarr.json").is_file():
            attributes = json.loads((path / "zarr.json").read_text()).get("attributes", {})
            return attributes.get("scorerecon") if "source_store" in attributes.get("scorerecon", {}) else None
        if path.is_dir():
            pngs, dicoms = sorted(path.glob("*.png")), sorted(path.glob("*.dcm"))
            if pngs:
                from PIL import Image

                with Image.open(pngs[0]) as image:
                    text = image.text.get("scorerecon")
                return json.loads(text) if text else None
            if dicoms:
                import pydicom

                dcm = pydicom.dcmread(dicoms[0], stop_before_pixels=True)
                block = dcm.private_block(0x0011, "scorerecon")
                return json.loads(block[0x01].value)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return None


def _is_store(path: Path) -> bool:
    if not (path.is_dir() and (path / "zarr.json").is_file()):
        return False
    try:
        attributes = json.loads((path / "zarr.json").read_text()).get("attributes", {})
    except (OSError, ValueError):
        return False
    return "groups" in attributes or "scorerecon_complete" in attributes


def verify_output(output: str | os.PathLike) -> tuple[list[str], int]:
    """Verify ``output`` from the provenance it carries; ``(report lines, files not found)``.

    Raises :class:`InputError` on the first file whose sha256 differs from its record, on a chunk
    that does not decode, or when ``output`` carries no scorerecon provenance at all.
    """
    output = Path(output)
    if not output.exists():
        raise InputError(output, "no such file or folder")
    checker = _Checker()
    if _is_store(output):
        checker.store(output)
        return checker.lines, checker.missing
    own = check_manifest(output, _shown)  # the export's own bytes first: a changed file may hide its record
    record = export_record(output)
    if record is None:
        raise InputError(output, "carries no scorerecon provenance (not a scorerecon store or export) and is not "
                                 "inside a run folder with an RO-Crate")
    checker.lines.extend(own or [f"unchecked: no {manifest_path(output).name} beside it (exported before exports "
                                 "listed their own sha256): only the sources and the store behind it are checked"])
    if record.get("exported_by"):
        checker.lines.append(f"command: {record['exported_by']}")
    checker.sources(record.get("source_files"), output)
    if record.get("source_store"):
        checker.store(Path(record["source_store"]), "source store")
    return checker.lines, checker.missing
