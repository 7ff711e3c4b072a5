"""Where a derived voxel grid lies in its input's space: index maps composed into the RAS affine.

A reconstruction rarely keeps its input's grid: it takes a subset of slices, averages
``f x f`` blocks, centre-crops or pads to a square, or comes from k-space with readout
oversampling removed. Each of these is an *axis-aligned index map*: output voxel index ``o``
along an axis sits at continuous input index ``i = scale * o + offset``. They compose as 4x4
matrices acting on ``(x, y, z, 1)`` (the store convention, docs/conventions.md section 2: the RAS
``affine`` attr maps ``(i, j, k, 1)`` with ``i`` indexing ``x``, ``j`` ``y`` and ``k`` ``z``), so
the output's affine is the input's affine times the composed map, and its coordinates are
the input's coordinates evaluated at the mapped indices (the input's frame: a crop or a
later slice keeps its position, it does not restart at zero).

* :func:`slice_map` -- a subset of slices (``scale`` = the index step, ``offset`` = the first
  index); only an arithmetic progression has an affine, any other subset keeps its exact ``z``
  coordinates but no affine (NIfTI and DICOM exports then refuse it with one line).
* :func:`block_mean_map` -- ``f x f`` block averages: output pixel ``o`` is the mean of input
  pixels ``f o .. f o + f - 1``, centred at ``f o + (f - 1) / 2``.
* :func:`centre_map` -- a centre crop or pad from ``n_in`` to ``n_out`` pixels (the integer
  split :func:`scorerecon.pipelines.evaluate.prepare_slices` uses; ``tests`` check the two agree).
* :func:`prepare_slices_map` -- the composition ``prepare_slices`` applies (downsample, crop, square).
* :func:`kspace_image_grid` -- the image grid of a k-space store: its ``affine`` attr if it has
  one, else spacing from the reader's field-of-view facts (twix ``fov_*_mm``, ISMRMRD
  ``encodedSpace``) with an unknown orientation and position: a diagonal RAS affine whose
  ``x`` (readout) runs along R, ``y`` (phase encode) along A, ``z`` along S, the grid centre
  at ``(0, 0, 0)`` (the scanner's isocentre for an unshifted FOV); 1 mm when no FOV is known.
  ``affine_source`` says which.
* :func:`centred_grid` -- that default for any grid (sinogram stores without an ``affine``).
* :func:`derived_geometry` -- the ``affine`` / ``spacing`` / ``orientation`` attrs and the ``z``,
  ``y``, ``x`` coordinates of a derived grid.

Hand-written: these are a few lines of index arithmetic on top of nibabel's ``aff2axcodes``;
no library tracks an affine through crops and block averages of an xarray store.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "axis_map",
    "block_mean_map",
    "centre_map",
    "centred_grid",
    "derived_geometry",
    "kspace_image_grid",
    "prepare_slices_map",
    "slice_map",
    "stated_affine",
]


def axis_map(x: tuple[float, float] = (1.0, 0.0), y: tuple[float, float] = (1.0, 0.0),
             z: tuple[float, float] = (1.0, 0.0)) -> np.ndarray:
    """The 4x4 index map ``input (x, y, z, 1) = M @ output (x, y, z, 1)`` from ``(scale, offset)`` per axis."""
    m = np.eye(4)
    for axis, (scale, offset) in enumerate((x, y, z)):
        m[axis, axis], m[axis, 3] = float(scale), float(offset)
    return m


def slice_map(indices: Sequence[int]) -> np.ndarray | None:
    """The ``z`` map of a slice subset, or ``None`` when its indices are not evenly spaced."""
    idx = [int(i) for i in indices]
    if not idx:
        raise ValueError("no slices")
    if len(idx) == 1:
        return axis_map(z=(1.0, idx[0]))
    steps = {b - a for a, b in zip(idx[:-1], idx[1:], strict=True)}
    if len(steps) != 1 or 0 in steps:
        return None
    return axis_map(z=(float(steps.pop()), idx[0]))


def block_mean_map(factor: int) -> np.ndarray:
    """In-plane map of ``factor x factor`` block means (the block's centre)."""
    f = int(factor)
    return axis_map(x=(f, (f - 1) / 2), y=(f, (f - 1) / 2))


def centre_map(n_in: tuple[int, int], n_out: tuple[int, int]) -> np.ndarray:
    """In-plane map of a centre crop / pad from ``n_in = (h, w)`` to ``n_out = (h, w)`` pixels.

    The kept block starts at ``(n_in - s) // 2`` in the input and ``(n_out - s) // 2`` in the
    output, ``s = min(n_in, n_out)``.
    """
    offsets = []
    for a, b in zip(n_in, n_out, strict=True):
        s = min(int(a), int(b))
        offsets.append((int(a) - s) // 2 - (int(b) - s) // 2)
    return axis_map(x=(1.0, offsets[1]), y=(1.0, offsets[0]))


def prepare_slices_map(shape: tuple[int, int], crop: int | None = None, downsample: int = 1,
                       square: bool = False) -> tuple[np.ndarray, tuple[int, int]]:
    """Index map and output ``(h, w)`` of ``prepare_slices(images, crop, downsample, square)`` on ``(h, w)`` slices.

    Mirrors :func:`scorerecon.pipelines.evaluate.prepare_slices`: block means first (the
    bottom/right remainder dropped), then the centre crop, then the pad to a square.
    """
    h, w = (int(s) for s in shape)
    m = np.eye(4)
    if downsample > 1:
        m = m @ block_mean_map(downsample)
        h, w = h // downsample, w // downsample
    if crop:
        m = m @ centre_map((h, w), (crop, crop))
        h, w = int(crop), int(crop)
    if square and h != w:
        n = max(h, w)
        m = m @ centre_map((h, w), (n, n))
        h, w = n, n
    return m, (h, w)


def stated_affine(value: Any) -> np.ndarray | None:
    """``value`` as a finite, invertible 4x4 affine, or ``None`` (absent or unusable)."""
    try:
        a = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    if a.shape != (4, 4) or not np.all(np.isfinite(a)) or abs(np.linalg.det(a[:3, :3])) < 1e-12:
        return None
    return a


def _positive(value: Any) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if np.isfinite(v) and v > 0 else None


def kspace_image_grid(attrs: Mapping[str, Any], shape: tuple[int, int, int]) -> tuple[np.ndarray, str]:
    """RAS affine of the image grid ``(z, ky, kx)``-shaped k-space reconstructs to, and where it came from.

    ``shape`` is the store's ``(z, ky, kx)`` before any oversampling removal (compose a
    :func:`centre_map` for that). See the module docstring for the fallbacks.
    """
    nz, ny, nx = (int(s) for s in shape)
    given = stated_affine(attrs.get("affine"))
    if given is not None:
        return given, "the k-space store's affine attr"
    spacing: list[float | None] = [None, None, None]
    source = ""
    twix = attrs.get("twix") if isinstance(attrs.get("twix"), Mapping) else {}
    if twix:
        over = _positive(attrs.get("readout_oversampling")) or 1.0
        fov_x, fov_y = _positive(twix.get("fov_readout_mm")), _positive(twix.get("fov_phase_mm"))
        lines = _positive(twix.get("phase_encoding_lines")) or ny
        if fov_x:
            spacing[0] = fov_x * over / nx
        if fov_y:
            spacing[1] = fov_y / lines
        spacing[2] = _positive(twix.get("slice_thickness_mm"))
        source = "twix FOV (dReadoutFOV, dPhaseFOV, dThickness)"
    fov = attrs.get("encodedSpace_fieldOfView_mm")
    matrix = attrs.get("encodedSpace_matrixSize")
    if isinstance(fov, Mapping) and isinstance(matrix, Mapping) and not source:
        for axis, key in enumerate("xyz"):
            f, n = _positive(fov.get(key)), _positive(matrix.get(key))
            spacing[axis] = f / n if f and n else None
        source = "ISMRMRD encodedSpace fieldOfView_mm / matrixSize"
    known = [s is not None for s in spacing]
    steps = np.array([s if s is not None else 1.0 for s in spacing])
    if not any(known):
        source = "default: 1 mm voxels"
    elif not all(known):
        source += " (1 mm where the header gives no size)"
    return centred_grid(steps, shape), \
        f"{source}; orientation and position unknown (x=readout->R, y=phase->A, z->S, centred)"


def centred_grid(spacing: Sequence[float], shape: tuple[int, int, int]) -> np.ndarray:
    """Diagonal RAS affine with voxel ``spacing`` ``(x, y, z)`` whose ``(z, y, x)``-shaped grid is centred at 0."""
    steps = np.asarray([float(v) for v in spacing], dtype=np.float64)
    nz, ny, nx = (int(s) for s in shape)
    affine = np.diag([*steps, 1.0])
    affine[:3, 3] = -steps * (np.array([nx, ny, nz]) - 1) / 2.0
    return affine


def _linear_coord(values: np.ndarray | None, index: np.ndarray, step: float) -> np.ndarray:
    """An input coordinate (linear in its index) evaluated at continuous indices."""
    if values is not None and len(values) >= 2:
        v0, v1 = float(values[0]), float(values[1])
        return v0 + (v1 - v0) * index
    v0 = float(values[0]) if values is not None and len(values) else 0.0
    return v0 + step * index


def derived_geometry(affine: np.ndarray, in_plane: np.ndarray, slices: Sequence[int], out_shape: tuple[int, int],
                     coords: Mapping[str, np.ndarray] | None = None) -> dict[str, Any]:
    """Geometry of slices ``slices`` of an input grid with RAS ``affine``, mapped in-plane by ``in_plane``.

    ``in_plane`` is a 4x4 index map acting on ``x`` and ``y`` only (e.g. from
    :func:`prepare_slices_map`); ``out_shape`` the output ``(h, w)``; ``coords`` the input's
    ``z``, ``y``, ``x`` coordinate values (``index * spacing`` by the readers' convention; the
    affine's column lengths when absent). Returns ``attrs`` (``affine``, ``spacing``,
    ``orientation``, ``affine_source``; no ``affine`` for unevenly spaced slices, with a
    ``geometry_note`` instead) and ``coords`` (``{"z": ..., "y": ..., "x": ...}``).
    """
    import nibabel as nib

    affine = np.asarray(affine, dtype=np.float64)
    coords = coords or {}
    steps = np.linalg.norm(affine[:3, :3], axis=0)
    idx = np.asarray([int(s) for s in slices], dtype=np.float64)
    h, w = (int(s) for s in out_shape)
    at_x = in_plane[0, 0] * np.arange(w) + in_plane[0, 3]
    at_y = in_plane[1, 1] * np.arange(h) + in_plane[1, 3]
    z_in = coords.get("z")
    z = np.asarray(z_in, dtype=np.float64)[idx.astype(int)] if z_in is not None and len(z_in) > idx.max() \
        else _linear_coord(None, idx, float(steps[2]))
    out_coords = {"z": z, "y": _linear_coord(_values(coords.get("y")), at_y, float(steps[1])),
                  "x": _linear_coord(_values(coords.get("x")), at_x, float(steps[0]))}
    zmap = slice_map(slices)
    attrs: dict[str, Any] = {}
    if zmap is None:
        attrs["geometry_note"] = (f"slices {[int(s) for s in slices]} are not evenly spaced: no affine "
                                  "(the z coordinates are exact; NIfTI / DICOM need evenly spaced slices)")
        return {"attrs": attrs, "coords": out_coords}
    new = affine @ zmap @ in_plane
    attrs["affine"] = new.tolist()
    attrs["spacing"] = [float(v) for v in np.linalg.norm(new[:3, :3], axis=0)]
    attrs["orientation"] = "".join(nib.orientations.aff2axcodes(new))
    return {"attrs": attrs, "coords": out_coords}


def _values(value: Any) -> np.ndarray | None:
    return None if value is None else np.asarray(value, dtype=np.float64)
