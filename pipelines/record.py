"""Geometry and provenance on every reconstruction output: one function every task's writer calls.

:func:`finish_output` turns a task's result dataset into what ``reconstruct`` writes, so that
``ingest -> reconstruct -> export --format nifti|dicom|geotiff`` works for every task and every
output can be traced back to the bytes it came from:

geometry
    * medical grids ``(z, y, x)``: a :class:`Geometry` from :func:`image_geometry` (an image
      store's RAS ``affine`` composed with the slice subset and the in-plane crop / block-mean
      maps, :mod:`scorerecon.modalities.io.grid`) or :func:`default_geometry` (k-space and
      sinogram stores: their ``affine`` attr if any, else the FOV / pixel size the reader
      recorded, documented in :func:`~scorerecon.modalities.io.grid.kspace_image_grid`). The
      ``z``, ``y``, ``x`` coordinates stay in the input's frame (slice 54 of the input keeps its
      ``z``). An image store's ``dicom`` record is kept, restricted to the reconstructed slices,
      so a DICOM export is a derived series that references its source instances.
    * geo grids ``(band, y, x)``: the CRS and transform stay in ``spatial_ref`` (rioxarray); the
      writer keeps the input's coordinate variable, this function checks it is there.
provenance
    ``task``, ``input_stores``, the ``source_files`` (path, sha256, bytes) of every input store
    and group, the prior (resolved path, weights sha256, name), ``command`` (the command line
    when run as ``scorerecon``, otherwise the equivalent one built from the parsed options)
    and every ``options`` value, ``software`` versions, ``hardware`` and ``seconds``.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from scorerecon import __version__
from scorerecon.errors import InputError

__all__ = ["Geometry", "command_line", "default_geometry", "finish_output", "image_geometry", "input_sources"]


@dataclass
class Geometry:
    """A medical output grid: attrs (``affine``, ``spacing``, ``orientation``, ...) and ``z``/``y``/``x`` coords."""

    attrs: dict[str, Any]
    coords: dict[str, np.ndarray] = field(default_factory=dict)
    slices: list[int] | None = None  # the input's z index of every output slice (coordinate ``source_slice``)


def _coords(ds: xr.Dataset, names: Sequence[str]) -> dict[str, np.ndarray]:
    return {n: np.asarray(ds[n].values, dtype=np.float64) for n in names if n in ds.coords}


def image_geometry(source: xr.Dataset, slices: Sequence[int], in_plane: np.ndarray, out_shape: tuple[int, int]
                   ) -> Geometry:
    """Geometry of ``slices`` of an image store ``(z, y, x)`` after the in-plane index map ``in_plane``.

    Keeps the input's ``affine`` (composed), ``modality`` and ``dicom`` record (the kept slices'
    part); an input without an ``affine`` gives coordinates only and a ``geometry_note``.
    """
    from scorerecon.modalities.io.dicom_derived import select_slices
    from scorerecon.modalities.io.grid import derived_geometry
    from scorerecon.modalities.io.store import attrs_json

    affine = attrs_json(source, "affine")
    n_z = int(source.sizes["z"])
    if affine is None:
        steps = [float(v) for v in (source.attrs.get("spacing") or [1.0, 1.0, 1.0])]
        affine = np.diag([*steps, 1.0])
        note = "the input store has no affine: coordinates from its index spacing only"
    else:
        note = None
    geo = derived_geometry(np.asarray(affine, dtype=np.float64), in_plane, slices, out_shape,
                           _coords(source, ("z", "y", "x")))
    attrs = dict(geo["attrs"])
    if note:
        attrs.pop("affine", None)
        attrs["geometry_note"] = note
    else:
        attrs["affine_source"] = f"input store affine ({source.attrs.get('affine_source', 'as ingested')}) " \
                                 "composed with the slice subset and in-plane maps"
    dicom = attrs_json(source, "dicom")
    if isinstance(dicom, dict):
        attrs["dicom"] = select_slices(dicom, slices, n_z)
    return Geometry(attrs, geo["coords"], [int(i) for i in slices])


def default_geometry(affine: np.ndarray, source_text: str, slices: Sequence[int], in_plane: np.ndarray,
                     out_shape: tuple[int, int]) -> Geometry:
    """Geometry of ``slices`` of a grid with a stated ``affine`` (k-space / sinogram stores), coords from it."""
    from scorerecon.modalities.io.grid import derived_geometry

    affine = np.asarray(affine, dtype=np.float64)
    geo = derived_geometry(affine, in_plane, slices, out_shape)
    attrs = dict(geo["attrs"])
    if "affine" in attrs:
        attrs["affine_source"] = f"{source_text}, composed with the slice subset and in-plane maps"
    return Geometry(attrs, geo["coords"], [int(i) for i in slices])


def input_sources(inputs: Sequence[tuple[str | Path, str]]) -> list[dict[str, Any]]:
    """``source_files`` of every ``(store, group)``, in order, each file once."""
    from scorerecon.modalities.io.store import attrs_json, open_store

    seen: set[tuple[str, str]] = set()
    out: list[dict[str, Any]] = []
    for store, group in inputs:
        for record in attrs_json(open_store(store, group), "source_files") or []:
            key = (str(record.get("path")), str(record.get("sha256")))
            if key not in seen:
                seen.add(key)
                out.append(dict(record))
    return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def _options(args: argparse.Namespace) -> dict[str, Any]:
    return {k: _jsonable(v) for k, v in sorted(vars(args).items()) if k != "func" and not k.startswith("_")}


def command_line(args: argparse.Namespace) -> str:
    """The command that made this output: argv when run as ``scorerecon``, else rebuilt from ``args``.

    The rebuilt form spells every parsed option as ``--name value`` (``store_true`` flags bare,
    unset ones left out); it reproduces the run with the effective values, defaults included.
    """
    if sys.argv and Path(sys.argv[0]).name == "scorerecon":
        return shlex.join(["scorerecon", *sys.argv[1:]])
    parts = ["scorerecon", str(getattr(args, "command", "") or "reconstruct")]
    for key, value in _options(args).items():
        if key == "command" or value is None or value is False:
            continue
        flag = "--" + key.replace("_", "-")
        if value is True:
            parts.append(flag)
        elif isinstance(value, list):
            parts += [flag, *map(str, value)]
        else:
            parts += [flag, str(value)]
    return shlex.join(parts)


def finish_output(ds: xr.Dataset, *, task: str, args: argparse.Namespace, model: Any, checkpoint: str | Path,
                  inputs: Sequence[tuple[str | Path, str]], info: Mapping[str, Any], seconds: float,
                  reader: str, geometry: Geometry | None = None, modality: str | None = None,
                  georeferenced: bool = True) -> xr.Dataset:
    """``ds`` with its geometry and provenance attached (see the module docstring); returns the new dataset.

    ``inputs``: every ``(store, group)`` read; ``checkpoint``: the prior's resolved path;
    ``geometry``: required for a medical ``(z, y, x)`` image, absent for a geo ``(band, y, x)``
    image (which must carry its CRS). ``modality`` (``CT``, ``MR``) picks the DICOM SOP class.
    ``georeferenced=False``: a plain picture ``(band, y, x)`` (a restored photograph) that has no
    CRS to carry; its pixel grid is its geometry.
    """
    from scorerecon.hardware import describe, software_versions

    dims = tuple(ds["image"].dims)
    attrs: dict[str, Any] = {}
    if dims[-3:] == ("z", "y", "x"):
        if geometry is None:
            raise ValueError("a medical (z, y, x) output needs its Geometry")
        ds = ds.assign_coords({name: (name, values, {"units": "mm"}) for name, values in geometry.coords.items()})
        if geometry.slices is not None:
            ds = ds.assign_coords(source_slice=("z", np.asarray(geometry.slices, dtype=np.int64),
                                                {"long_name": "z index of the slice in the input store"}))
        attrs.update(geometry.attrs)
    elif dims[-3:] == ("band", "y", "x") and georeferenced:
        if "spatial_ref" not in ds.coords or ds["image"].rio.crs is None:
            raise InputError(inputs[0][0] if inputs else None, "the output carries no CRS / transform to write")
        attrs["crs"] = ds["image"].rio.crs.to_string()
        attrs["transform"] = [float(v) for v in tuple(ds["image"].rio.transform())[:6]]
    if modality:
        attrs["modality"] = modality
    attrs.update({
        "reader": reader, "reader_version": "1.1", "scorerecon_version": __version__, "task": task,
        "input_stores": [{"path": str(Path(store).resolve()), "group": group} for store, group in inputs],
        "input_store": str(Path(inputs[0][0]).resolve()) if inputs else None,
        "source_files": input_sources(inputs),
        "checkpoint": str(Path(checkpoint).resolve()), "checkpoint_sha256": model.card["weights"]["sha256"],
        "checkpoint_name": model.card.get("name"),
        "reconstruction": dict(info), "seconds": round(float(seconds), 3),
        "command": command_line(args), "options": _options(args),
        "software": software_versions(), "hardware": describe(str(getattr(args, "device", "cpu"))),
    })
    ds.attrs = attrs
    return ds
