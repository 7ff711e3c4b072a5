"""Random-patch training data from Zarr stores (or, as a fallback, NIfTI files read directly).

Patch-based priors (Hu et al., NeurIPS 2024; docs/conventions.md section 4) train on small random patches
and tile to any image size at inference, so the training set is "every patch position of every
training slice" and one batch is a handful of random draws from it.

* **Sources**: Zarr stores written by ``scorerecon ingest`` (variable ``image``, medical dims
  ``(z, y, x)``), opened with :func:`~scorerecon.modalities.io.store.open_store`. A volume small
  enough (``cache_mb``) is read once into RAM; a larger one stays dask-backed and each patch
  reads only the chunks it touches. A ``.nii``/``.nii.gz`` path is read with nibabel (reoriented
  to RAS+, transposed to ``(z, y, x)`` like the store) so training is not blocked on ingest; for
  2-D patches a 4-D NIfTI contributes the slices of every frame. A real ``.npy`` array (2-D or
  3-D) is read as ``(z, y, x)``; any other file goes through the ingest readers (DICOM, ...).
  A path ``pkg:<package>/<file>`` names a data file shipped inside an installed package (the
  example MR of nibabel, dipy, pydicom-data), so configs stay portable across machines.
  An entry may be a mapping ``{path, weight, holdout}``: ``weight`` is the share of patches drawn
  from it (all sources or none; default: in proportion to the patch positions each offers) and
  ``holdout`` replaces the section's ``holdout`` for that source (``{}``: nothing held out).
* **Patches**: ``patch_size`` with two entries gives 2-D patches from slices along
  ``slice_axis``; three entries give 3-D patches. An optional ``channel_dim`` (e.g. ``band``)
  becomes the channel axis.
* **Held-out data**: ``holdout: {dim: [start, stop)}`` (half-open index ranges) — no training
  patch overlaps them, so evaluation on those slices is fair.
* **Normalisation**: stated in the config and recorded in the model card with the values it
  resolved to: ``percentile`` (``percentiles: [lo, hi]`` of the training voxels, default
  0.5/99.5), ``minmax`` or ``fixed`` (``values: [lo, hi]``), mapped linearly to ``range``
  (default ``[-1, 1]``) and clipped there. ``per_source: true`` resolves ``values`` for every
  source on its own voxels (scanners and contrasts share no intensity unit); the card's
  ``values`` are then the first source's, the reference scale of inference with ``intensity:
  card``, and ``source_values`` lists all of them.
* **Background**: patches whose foreground fraction (normalised value above ``threshold`` of
  the range) is below ``min_fraction`` are redrawn, up to ``max_tries`` times.
* **Augmentation** (``augment``, :mod:`scorerecon.models.augment`): random zoom (a region of
  ``patch / s`` pixels resampled to the patch), flips, 90-degree rotations, gamma/contrast and
  noise, applied after normalisation (and after the background check).
* **Slice axes**: ``slice_axes: [z, y, x]`` draws 2-D patches from slices along any of these
  axes of a 3-D volume (``slice_axis`` stays the reference plane). Voxel spacing comes from the
  store's ``affine`` (or the NIfTI header); a slice through an anisotropic volume is resampled
  so both patch axes have the reference plane's in-plane spacing. Volumes without a spacing
  (``.npy``), folded 4-D series and axes a patch does not fit along use ``slice_axis`` only.
* **Pixel spacing**: the card's ``data.pixel_spacing_mm`` is the training in-plane pixel
  spacing of the first source along the patch axes (``null`` when unknown); with ``zoom`` the
  prior saw spacings ``pixel_spacing_mm / s`` for ``s`` in the zoom range.
  ``source_pixel_spacing_mm`` lists every source's ``{dim: mm}``.

All randomness comes from a ``numpy.random.Generator`` the caller owns, so a training run can
save and restore it (its state is plain JSON).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from scorerecon.errors import InputError
from scorerecon.models.augment import Augmentation, resample

DEFAULT_NORMALIZATION = {"method": "percentile", "percentiles": [0.5, 99.5], "range": [-1.0, 1.0]}
DEFAULT_FOREGROUND = {"threshold": 0.1, "min_fraction": 0.0, "max_tries": 20}


def _is_nifti(path: Path) -> bool:
    return path.name.endswith((".nii", ".nii.gz"))


def resolve_source_path(entry: str, base: Path) -> Path:
    """A config source path: ``pkg:<package>/<file>`` inside an installed package, else relative to ``base``."""
    if entry.startswith("pkg:"):
        import importlib.resources

        package, _, inner = entry[4:].partition("/")
        try:
            root = importlib.resources.files(package)
        except ModuleNotFoundError:
            raise InputError(None, f"training source {entry!r}: package {package!r} is not installed") from None
        return Path(str(root.joinpath(*inner.split("/"))))
    return Path(entry) if Path(entry).is_absolute() else base / entry


class _Volume:
    """One source array with named dims: cached as numpy, or a lazy xarray DataArray."""

    def __init__(self, path: Path, group: str, variable: str, cache_mb: float, fold_frames: bool = False) -> None:
        self.path = path
        self.lazy = None
        self.spacing: dict[str, float] | None = None  # mm per dim, when the source says
        self.folded = False  # a 4-D series folded into z: z is not a spatial axis
        if _is_nifti(path):
            self.dims, self.data, self.sources = self._read_nifti(path, fold_frames)
            return
        if path.suffix == ".npy":
            self.dims, self.data, self.sources = self._read_npy(path)
            return
        from scorerecon.sources import open_source

        # a store, or any other file the ingest reads (DICOM, ...), lazily: through the opener the
        # pipeline layer registers (scorerecon.sources), so the core does not import it
        opened = open_source(path, group)
        ds, where, self.sources = opened.data, opened.where, opened.sources
        self.spacing = _affine_spacing(opened.affine)
        if variable not in ds.data_vars:
            raise InputError(path, f"{where} has no variable {variable!r} "
                                   f"(has {sorted(map(str, ds.data_vars))})")
        var = ds[variable]
        if np.iscomplexobj(np.empty(0, dtype=var.dtype)):
            raise InputError(path, f"variable {variable!r} is complex; train priors on real images")
        self.dims = tuple(map(str, var.dims))
        if var.size * var.dtype.itemsize <= cache_mb * 2**20:
            self.data = opened.load(variable)
        else:
            self.data, self.lazy = None, var

    def _read_nifti(self, path: Path, fold_frames: bool) -> tuple[tuple[str, ...], np.ndarray, list[dict[str, Any]]]:
        import nibabel as nib

        from scorerecon.hashing import describe_sources

        try:
            img = nib.as_closest_canonical(nib.load(str(path)))
            data = np.asanyarray(img.dataobj)
        except Exception as exc:
            raise InputError(path, f"cannot read NIfTI ({type(exc).__name__}: {exc})") from None
        self.spacing = _affine_spacing(img.affine)
        if data.ndim > 3 and fold_frames:  # (x, y, z, t, ...) -> the slices of every frame
            self.folded = True
            data = data.reshape(*data.shape[:3], -1)
            data = data.transpose(3, 2, 1, 0).reshape(-1, data.shape[1], data.shape[0])
            return ("z", "y", "x"), np.ascontiguousarray(data), describe_sources([path])
        if data.ndim != 3:
            raise InputError(path, f"expected a 3-D NIfTI volume, got shape {data.shape}")
        return ("z", "y", "x"), np.ascontiguousarray(data.transpose(2, 1, 0)), describe_sources([path])

    @staticmethod
    def _read_npy(path: Path) -> tuple[tuple[str, ...], np.ndarray, list[dict[str, Any]]]:
        from scorerecon.hashing import describe_sources

        try:
            data = np.load(path, allow_pickle=False)
        except Exception as exc:
            raise InputError(path, f"cannot read .npy ({type(exc).__name__}: {exc})") from None
        if data.ndim not in (2, 3) or np.iscomplexobj(data) or not np.issubdtype(data.dtype, np.number):
            raise InputError(path, f"expected a real 2-D or 3-D array, got {data.dtype} {data.shape}")
        return ("z", "y", "x"), np.ascontiguousarray(data.reshape((-1, *data.shape[-2:]))), describe_sources([path])

    @property
    def shape(self) -> dict[str, int]:
        shape = self.data.shape if self.data is not None else self.lazy.shape
        return dict(zip(self.dims, shape, strict=True))

    def read(self, index: dict[str, slice | int]) -> np.ndarray:
        """The block at ``index`` (dims not named are taken whole), as float32."""
        if self.data is not None:
            key = tuple(index.get(d, slice(None)) for d in self.dims)
            return np.asarray(self.data[key], dtype=np.float32)
        try:
            return np.asarray(self.lazy.isel(index).values, dtype=np.float32)
        except Exception as exc:
            raise InputError(self.path, f"corrupt chunk ({type(exc).__name__}: {exc})") from None


class PatchDataset:
    """Random normalised patches from one or more volumes; see the module docstring for config keys.

    ``config`` is the ``data`` section of a training YAML. Relative source paths resolve
    against ``base_dir`` (default: the current directory).
    """

    def __init__(self, config: dict[str, Any], base_dir: str | os.PathLike | None = None) -> None:
        self.config = dict(config)
        base = Path(base_dir) if base_dir is not None else Path.cwd()
        sources = config.get("sources") or []
        if not sources:
            raise InputError(None, "data.sources is empty: name at least one store or NIfTI file")
        entries = [e if isinstance(e, dict) else {"path": e} for e in sources]
        if any("path" not in e for e in entries):
            raise InputError(None, "every data.sources mapping needs a 'path'")
        self.paths = [resolve_source_path(str(e["path"]), base) for e in entries]
        for p in self.paths:
            if not p.exists():
                raise InputError(p, "training source does not exist")
        self.group = config.get("group", "/")
        self.variable = config.get("variable", "image")
        self.patch_size = [int(s) for s in config["patch_size"]]
        if len(self.patch_size) not in (2, 3):
            raise InputError(None, f"data.patch_size must have 2 or 3 entries, got {self.patch_size}")
        self.slice_axis = config.get("slice_axis", "z") if len(self.patch_size) == 2 else None
        self.channel_dim = config.get("channel_dim")
        self.holdout = self._ranges(config.get("holdout"))
        self.holdouts = [self._ranges(e["holdout"]) if "holdout" in e else self.holdout for e in entries]
        self.foreground = {**DEFAULT_FOREGROUND, **(config.get("foreground") or {})}
        self.volumes = [_Volume(p, self.group, self.variable, float(config.get("cache_mb", 512)),
                                fold_frames=self.slice_axis is not None and self.channel_dim is None)
                        for p in self.paths]
        self.spatial_dims = [self._spatial_dims(v) for v in self.volumes]
        self.augment = Augmentation(config.get("augment"))
        self.slice_axes = self._slice_axes(config.get("slice_axes"))
        self._augmenting = self.augment.active or len(self.slice_axes) > 1
        self._starts = [self._valid_starts(v, dims, hold) for v, dims, hold in
                        zip(self.volumes, self.spatial_dims, self.holdouts, strict=True)]
        counts = np.array([np.prod([len(s) for s in starts.values()]) for starts in self._starts], dtype=float)
        for path, count in zip(self.paths, counts, strict=True):
            if count == 0:
                raise InputError(path, f"no patch of size {self.patch_size} fits outside the held-out ranges")
        self._weights = self._source_weights(entries, counts)
        norm = {**DEFAULT_NORMALIZATION, **(config.get("normalization") or {})}
        if norm.get("per_source"):
            self.source_normalizations = [self._resolve_normalization(norm, [k]) for k in range(len(self.volumes))]
            self.normalization = {**self.source_normalizations[0],
                                  "source_values": [n["values"] for n in self.source_normalizations]}
        else:
            self.normalization = self._resolve_normalization(norm, list(range(len(self.volumes))))
            self.source_normalizations = [self.normalization] * len(self.volumes)
        self._plane_spacing = [self._in_plane_spacing(k) for k in range(len(self.volumes))]
        self.source_axes = [self._usable_axes(k) for k in range(len(self.volumes))]

    def _slice_axes(self, axes: Any) -> list[str | None]:
        if self.slice_axis is None:
            if axes:
                raise InputError(None, "data.slice_axes needs 2-D patches (patch_size with two entries)")
            return [None]
        if not axes:
            return [self.slice_axis]
        if isinstance(axes, str) or not all(isinstance(a, str) for a in axes) or len(set(axes)) != len(axes):
            raise InputError(None, f"data.slice_axes must be a list of distinct dim names, got {axes!r}")
        if self.slice_axis not in axes:
            raise InputError(None, f"data.slice_axes {list(axes)} must include slice_axis {self.slice_axis!r}")
        return list(axes)

    @staticmethod
    def _ranges(holdout: dict[str, Any] | None) -> dict[str, tuple[int, int]]:
        return {str(k): (int(v[0]), int(v[1])) for k, v in (holdout or {}).items()}

    def _source_weights(self, entries: list[dict[str, Any]], counts: np.ndarray) -> np.ndarray:
        given = [e.get("weight") for e in entries]
        if all(w is None for w in given):
            return counts / counts.sum()
        if any(w is None for w in given) or any(float(w) < 0 for w in given) or sum(map(float, given)) <= 0:
            raise InputError(None, "data.sources weights: give a non-negative weight for every source or for none")
        weights = np.array([float(w) for w in given])
        return weights / weights.sum()

    # --- geometry -----------------------------------------------------------------------------
    def _spatial_dims(self, volume: _Volume) -> list[str]:
        dims = [d for d in volume.dims if d != self.channel_dim]
        if len(self.patch_size) == 2:
            if self.slice_axis not in dims:
                raise InputError(volume.path, f"slice_axis {self.slice_axis!r} not in dims {volume.dims}")
            dims = [d for d in dims if d != self.slice_axis]
        if len(dims) != len(self.patch_size):
            raise InputError(volume.path, f"dims {volume.dims} do not match patch_size {self.patch_size}")
        return dims

    def _valid_starts(self, volume: _Volume, dims: list[str],
                      holdout: dict[str, tuple[int, int]]) -> dict[str, np.ndarray]:
        """Per dim, the patch start indices whose extent avoids that dim's held-out range."""
        shape = volume.shape
        extents = dict(zip(dims, self.patch_size, strict=True))
        if self.slice_axis is not None:
            extents = {self.slice_axis: 1, **extents}
        return self._region_starts(shape, extents, holdout)

    @staticmethod
    def _region_starts(shape: dict[str, int], extents: dict[str, int],
                holdout: dict[str, tuple[int, int]]) -> dict[str, np.ndarray]:
        """Per dim, the start indices of a region of ``extents`` that avoid the held-out ranges."""
        starts = {}
        for dim, extent in extents.items():
            s = np.arange(max(shape[dim] - extent + 1, 0))
            if dim in holdout:
                lo, hi = holdout[dim]
                s = s[(s + extent <= lo) | (s >= hi)]
            starts[dim] = s
        return starts

    def _plane_dims(self, k: int, axis: str | None) -> list[str]:
        """The patch dims of source ``k`` for slices along ``axis`` (in the volume's dim order)."""
        if axis is None or axis == self.slice_axis:
            return self.spatial_dims[k]
        return [d for d in self.volumes[k].dims if d not in (self.channel_dim, axis)]

    def _in_plane_spacing(self, k: int) -> float | None:
        spacing = self.volumes[k].spacing
        if spacing is None or any(d not in spacing for d in self.spatial_dims[k]):
            return None
        return float(np.mean([spacing[d] for d in self.spatial_dims[k]]))

    def _extents(self, k: int, axis: str | None, scale: float) -> dict[str, int]:
        """Region size per patch dim that resamples to the patch at zoom ``scale``.

        Each dim's output spacing is its target divided by ``scale``: the source's own grid for the
        reference plane's dims, the reference plane's mean in-plane spacing for the dim a slice
        along another axis brings in, or the first source's in-plane spacing for every dim with
        ``zoom.spacing: reference``. Without a known spacing every target is the source's grid.
        """
        dims, spacing = self._plane_dims(k, axis), self.volumes[k].spacing
        reference = (self.augment.zoom is not None and self.augment.zoom["spacing"] == "reference"
                     and self._plane_spacing[0] is not None)
        target = self._plane_spacing[0] if reference else self._plane_spacing[k]
        extents = {}
        for dim, size in zip(dims, self.patch_size, strict=True):
            known = spacing is not None and dim in spacing and target is not None
            own = spacing[dim] if known else 1.0
            want = own if not known or (dim in self.spatial_dims[k] and not reference) else target
            extents[dim] = max(1, int(round(size * want / (scale * own))))
        return extents

    def _axis_extents(self, k: int, axis: str | None, scale: float) -> dict[str, int]:
        extents = self._extents(k, axis, scale)
        return extents if axis is None else {axis: 1, **extents}

    def _usable_axes(self, k: int) -> list[str | None]:
        """The slice axes a patch of source ``k`` fits along at scale 1 (outside its held-out ranges)."""
        volume = self.volumes[k]
        axes = []
        for axis in self.slice_axes:
            if axis is not None and axis != self.slice_axis and (volume.folded or volume.spacing is None
                                                                 or axis not in volume.dims):
                continue
            starts = self._region_starts(volume.shape, self._axis_extents(k, axis, 1.0), self.holdouts[k])
            if all(len(s) for s in starts.values()):
                axes.append(axis)
        if not axes:
            raise InputError(self.paths[k], f"no patch of size {self.patch_size} fits outside the held-out ranges")
        return axes

    @property
    def channels(self) -> int:
        """Number of data channels of a patch (1 unless ``channel_dim`` is set)."""
        return 1 if self.channel_dim is None else self.volumes[0].shape[self.channel_dim]

    # --- normalisation ------------------------------------------------------------------------
    def _training_sample(self, volume: _Volume, holdout: dict[str, tuple[int, int]],
                         max_slices: int = 64) -> np.ndarray:
        """Training voxels for the statistics: all of a cached volume, else evenly spaced slices."""
        axis = self.slice_axis or next(d for d in volume.dims if d != self.channel_dim)
        starts = np.arange(volume.shape[axis])
        if axis in holdout:
            lo, hi = holdout[axis]
            starts = starts[(starts < lo) | (starts >= hi)]
        if volume.data is None and len(starts) > max_slices:
            starts = starts[np.linspace(0, len(starts) - 1, max_slices).round().astype(int)]
        if volume.data is not None:
            take = np.take(volume.data, starts, axis=volume.dims.index(axis))
            return np.asarray(take, dtype=np.float32).ravel()
        return np.concatenate([volume.read({axis: int(i)}).ravel() for i in starts])

    def _resolve_normalization(self, norm: dict[str, Any], which: list[int]) -> dict[str, Any]:
        """Resolve ``norm`` on the training voxels of the volumes at indices ``which``."""
        method = norm["method"]
        if method == "fixed":
            lo, hi = (float(v) for v in norm["values"])
        elif method in ("percentile", "minmax"):
            values = np.concatenate([self._training_sample(self.volumes[k], self.holdouts[k]) for k in which])
            q = norm.get("percentiles", [0.0, 100.0]) if method == "percentile" else [0.0, 100.0]
            lo, hi = (float(v) for v in np.percentile(values, q))
        else:
            raise InputError(None, f"unknown normalization method {method!r}; "
                                   "expected 'percentile', 'minmax' or 'fixed'")
        if hi <= lo:
            raise InputError(self.paths[which[0]], f"normalization range is empty (low={lo}, high={hi})")
        out = {**norm, "values": [lo, hi], "range": [float(r) for r in norm.get("range", [-1.0, 1.0])],
               "clip": bool(norm.get("clip", True))}
        if method != "percentile":
            out.pop("percentiles", None)
        return out

    def normalize(self, block: np.ndarray) -> np.ndarray:
        """Map data units to the model's range (linear, then clipped if the config says so)."""
        return normalize(block, self.normalization)

    # --- sampling -----------------------------------------------------------------------------
    def _draw(self, rng: np.random.Generator) -> tuple[np.ndarray, int]:
        k = int(rng.choice(len(self.volumes), p=self._weights)) if len(self.volumes) > 1 else 0
        if self._augmenting:
            return self._draw_augmented(k, rng), k
        volume, starts, dims = self.volumes[k], self._starts[k], self.spatial_dims[k]
        index: dict[str, slice | int] = {}
        if self.slice_axis is not None:
            index[self.slice_axis] = int(starts[self.slice_axis][rng.integers(len(starts[self.slice_axis]))])
        for dim, size in zip(dims, self.patch_size, strict=True):
            s = int(starts[dim][rng.integers(len(starts[dim]))])
            index[dim] = slice(s, s + size)
        block = volume.read(index)
        order = ([self.channel_dim] if self.channel_dim else []) + dims
        present = [d for d in volume.dims if d in order]
        block = np.transpose(block, [present.index(d) for d in order])
        return (block if self.channel_dim else block[None]), k

    def _draw_augmented(self, k: int, rng: np.random.Generator) -> np.ndarray:
        """A block of source ``k`` along a random slice axis at a random zoom, resampled to the patch."""
        volume, axes = self.volumes[k], self.source_axes[k]
        axis = axes[int(rng.integers(len(axes)))] if len(axes) > 1 else axes[0]
        scale = self.augment.draw_zoom(rng)
        extents = self._axis_extents(k, axis, scale)
        starts = self._region_starts(volume.shape, extents, self.holdouts[k])
        if not all(len(s) for s in starts.values()):  # the zoomed region does not fit: native scale
            extents = self._axis_extents(k, axis, 1.0)
            starts = self._region_starts(volume.shape, extents, self.holdouts[k])
        index: dict[str, slice | int] = {}
        for dim, extent in extents.items():
            s = int(starts[dim][rng.integers(len(starts[dim]))])
            index[dim] = s if dim == axis else slice(s, s + extent)
        block = volume.read(index)
        dims = self._plane_dims(k, axis)
        order = ([self.channel_dim] if self.channel_dim else []) + dims
        present = [d for d in volume.dims if d in order]
        block = np.transpose(block, [present.index(d) for d in order])
        return resample(block if self.channel_dim else block[None], self.patch_size)

    def sample_patch(self, rng: np.random.Generator) -> np.ndarray:
        """One normalised patch ``(C, *patch_size)``, redrawn while it is mostly background."""
        lo, hi = self.normalization["range"]
        level = lo + float(self.foreground["threshold"]) * (hi - lo)
        need = float(self.foreground["min_fraction"])
        for _ in range(max(int(self.foreground["max_tries"]), 1)):
            block, k = self._draw(rng)
            patch = normalize(block, self.source_normalizations[k])
            if need <= 0 or float((patch > level).mean()) >= need:
                break
        if self.augment.active:
            norm = self.source_normalizations[k]
            patch = self.augment.apply(patch, rng, (lo, hi), bool(norm.get("clip", True)))
        return patch

    def sample_batch(self, batch_size: int, rng: np.random.Generator) -> torch.Tensor:
        """A float32 batch ``(B, C, *patch_size)`` of random patches."""
        return torch.from_numpy(np.stack([self.sample_patch(rng) for _ in range(batch_size)]))

    def source_files(self) -> list[dict[str, Any]]:
        """Provenance of the training data (path, sha256, bytes of every original file)."""
        records = []
        for path, volume in zip(self.paths, self.volumes, strict=True):
            for src in volume.sources:
                records.append({**src, "via": str(path)})
        return records

    def describe(self) -> dict[str, Any]:
        """The JSON-able data section of a model card (config plus resolved values)."""
        return {
            "sources": [str(p) for p in self.paths], "group": self.group, "variable": self.variable,
            "patch_size": self.patch_size, "slice_axis": self.slice_axis, "channel_dim": self.channel_dim,
            "holdout": {k: list(v) for k, v in self.holdout.items()}, "foreground": self.foreground,
            "source_holdout": [{k: list(v) for k, v in h.items()} for h in self.holdouts],
            "source_weights": [round(float(w), 6) for w in self._weights],
            "normalization": self.normalization, "source_files": self.source_files(),
            "volume_shapes": [v.shape for v in self.volumes],
            "augment": self.augment.describe(), "slice_axes": self.slice_axes,
            "source_slice_axes": self.source_axes,
            "pixel_spacing_mm": self.pixel_spacing_mm(),
            "source_pixel_spacing_mm": [v.spacing for v in self.volumes],
        }

    def pixel_spacing_mm(self) -> list[float] | None:
        """The training pixel spacing along the patch axes (first source, reference plane), if known."""
        spacing = self.volumes[0].spacing
        if spacing is None or any(d not in spacing for d in self.spatial_dims[0]):
            return None
        return [round(float(spacing[d]), 6) for d in self.spatial_dims[0]]


def _affine_spacing(affine: Any) -> dict[str, float] | None:
    """``{x, y, z: mm}`` from a 4x4 affine mapping ``(i, j, k)`` = ``(x, y, z)`` indices to mm."""
    if affine is None:
        return None
    a = np.asarray(affine, dtype=np.float64)
    if a.shape != (4, 4) or not np.all(np.isfinite(a)):
        return None
    norms = np.linalg.norm(a[:3, :3], axis=0)
    if not np.all(norms > 0):
        return None
    return {"x": round(float(norms[0]), 6), "y": round(float(norms[1]), 6), "z": round(float(norms[2]), 6)}


def normalize(block: np.ndarray, normalization: dict[str, Any]) -> np.ndarray:
    """Data units -> model range with a resolved normalisation dict (as in a model card)."""
    (lo, hi), (a, b) = normalization["values"], normalization["range"]
    out = (np.asarray(block, dtype=np.float32) - lo) / (hi - lo) * (b - a) + a
    return np.clip(out, a, b) if normalization.get("clip", True) else out


def denormalize(block: np.ndarray, normalization: dict[str, Any]) -> np.ndarray:
    """Model range -> data units, the inverse of :func:`normalize` (up to clipping)."""
    (lo, hi), (a, b) = normalization["values"], normalization["range"]
    return (np.asarray(block, dtype=np.float32) - a) / (b - a) * (hi - lo) + lo


class GaussianMixtureDataset:
    """Points from an isotropic Gaussian mixture: the toy data whose mode weights a prior must learn.

    Config: ``means`` (K x D), ``stds`` (K values or one), ``weights`` (K values summing to 1).
    Batches are ``(B, D)`` float32, drawn from the caller's numpy generator.
    """

    def __init__(self, config: dict[str, Any]) -> None:
        self.means = np.asarray(config["means"], dtype=np.float64)
        k = self.means.shape[0]
        self.stds = np.broadcast_to(np.asarray(config.get("stds", 1.0), dtype=np.float64), (k,)).copy()
        self.weights = np.asarray(config.get("weights", [1.0 / k] * k), dtype=np.float64)
        if self.means.ndim != 2 or self.weights.shape != (k,) or abs(self.weights.sum() - 1.0) > 1e-6:
            raise InputError(None, "gaussian_mixture needs means (K x D) and K weights summing to 1")

    @property
    def channels(self) -> int:
        return int(self.means.shape[1])

    def sample_batch(self, batch_size: int, rng: np.random.Generator) -> torch.Tensor:
        comp = rng.choice(len(self.weights), size=batch_size, p=self.weights)
        noise = rng.standard_normal((batch_size, self.channels))
        return torch.from_numpy((self.means[comp] + self.stds[comp, None] * noise).astype(np.float32))

    def describe(self) -> dict[str, Any]:
        return {"kind": "gaussian_mixture", "means": self.means.tolist(), "stds": self.stds.tolist(),
                "weights": self.weights.tolist(), "normalization": {"method": "none"}, "source_files": []}
