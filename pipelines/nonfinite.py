"""``--nonfinite refuse|mask``: what ``reconstruct`` and ``evaluate`` (``--task mri|ct``) do with NaN/Inf input values.

A solver fed one NaN spreads it over its whole output (a CT slice with a few NaN voxels came back
two-thirds NaN), so by default (``refuse``) an input store holding any is one line naming the
store and the count (:func:`~scorerecon.modalities.io.store.load_checked`). ``mask`` goes on,
explicitly, with a fill rule per kind of variable, and says so in the record:

* **image** ``(z, y, x)`` (MR or CT image stores, from which the measurement is simulated): each
  non-finite voxel takes the median of the finite voxels of its slice (a slice with none is
  refused). ``reconstruct`` writes those voxels back as NaN in the output ``image`` (and ``std``),
  so nothing filled in here passes as reconstructed data; with ``--downsample F`` a block holding
  one such voxel is NaN. NIfTI export keeps the NaN, PNG export maps it to 0, DICOM export refuses
  it (DICOM has no NaN). ``evaluate`` uses the filled slices as the ground truth (the measurement
  is simulated from them, so the comparison is self-consistent) and records the fill.
* **k-space** ``(coil, z, ky, kx)``: 0, and every phase-encode line (``ky`` row) holding a
  non-finite sample in any coil or slice read is removed from the sampling mask (one mask serves
  every coil and slice, and a readout line is the unit a scanner acquires; with the readout
  oversampling removed in the image domain one bad sample touches the whole line anyway), so a
  filled zero never enters the data term as a measurement.
* **sinogram** ``(z, angle, det)``: linear interpolation along the detector between the finite
  samples of the same view, the usual bad-detector-pixel correction (a fill of 0 would be a ray
  through air and streak); a view with no finite sample is refused.

The record (``reconstruct``: the output store's ``reconstruction`` attr, key ``nonfinite``;
``evaluate``: ``params.nonfinite`` of the JSON): the policy, the variable, the total count, the
count per slice keyed by the input's z index, the fill rule and how the output marks them.

Hand-written: numpy's ``median`` and ``interp`` do the work; no library offers this policy.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from scorerecon.pipelines.errors import InputError

__all__ = ["HELP", "POLICIES", "Screen", "add_argument", "screen_of"]

POLICIES = ("refuse", "mask")
HELP = ("mri/ct: NaN/Inf values in the input store: refuse (default, one line naming the count) or mask: fill "
        "them (image: slice median; k-space: 0, its ky line dropped from the mask; sinogram: interpolated along "
        "the detector), record how many per slice, and write the filled image voxels back as NaN in the output "
        "(docs/io.md)")

_FILL = {
    "image": "median of the finite voxels of the same slice",
    "kspace": "0; every ky line holding one is removed from the sampling mask (not acquired)",
    "sinogram": "linear interpolation along the detector between the finite samples of the same view",
}


def add_argument(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """Add ``--nonfinite {refuse,mask}`` (default ``refuse``)."""
    parser.add_argument("--nonfinite", choices=POLICIES, default="refuse", help=HELP)


class Screen:
    """Loads one input store's variable under a ``--nonfinite`` policy and remembers what it filled.

    :meth:`load` may be called several times (a task reads every slice for its statistics and the
    selected ones to reconstruct): counts and marks are kept per input z index, so the record is
    the same whichever order and however often slices are read.
    """

    def __init__(self, policy: str, path: str | os.PathLike | None) -> None:
        if policy not in POLICIES:
            raise InputError(None, f"--nonfinite {policy!r}: choose from {', '.join(POLICIES)}")
        self.policy, self.path = policy, path
        self.variable: str | None = None
        self.counts: dict[int, int] = {}  #: input z index -> non-finite values in that slice
        self.marks: dict[int, np.ndarray] = {}  #: input z index -> bool (y, x) of filled voxels (image inputs)
        self.dropped_lines: set[int] = set()  #: k-space: ky rows removed from the sampling mask

    def load(self, da: Any, slices: Sequence[int]) -> np.ndarray:
        """The values of ``da`` (an xarray variable named ``image``, ``kspace`` or ``sinogram``, with a ``z``
        dim) at ``slices``: refused if any is non-finite (``refuse``), else filled per the module docstring."""
        from scorerecon.modalities.io.store import load_checked

        name = str(da.name)
        values = load_checked(da.isel(z=list(slices)).to_dataset(name=name), self.path, name,
                              finite=self.policy == "refuse")
        if self.policy == "refuse" or values.dtype.kind not in "fc":
            return values
        if name not in _FILL:
            raise InputError(self.path, f"--nonfinite mask: no fill rule for variable {name!r}")
        self.variable = name
        axis = list(da.dims).index("z")
        bad = ~np.isfinite(values)
        per_slice = bad.sum(axis=tuple(i for i in range(bad.ndim) if i != axis))
        self.counts.update({int(z): int(n) for z, n in zip(slices, per_slice, strict=True)})
        if not bad.any():
            return values
        values = np.array(values, copy=True)
        if name == "image":
            self._fill_images(values, bad, slices)
        elif name == "kspace":
            values[bad] = 0
            self.dropped_lines.update(int(r) for r in np.flatnonzero(bad.any(axis=(0, 1, 3))))
        else:
            self._fill_views(values, bad, slices)
        return values

    def _fill_images(self, values: np.ndarray, bad: np.ndarray, slices: Sequence[int]) -> None:
        for i, z in enumerate(slices):
            if not bad[i].any():
                continue
            finite = values[i][~bad[i]]
            if finite.size == 0:
                raise InputError(self.path, f"slice z={z} has no finite voxel: nothing to fill its "
                                            f"{int(bad[i].sum())} NaN/Inf voxel(s) from (leave it out with --slices)")
            values[i][bad[i]] = np.median(finite)
            self.marks[int(z)] = bad[i].copy()

    def _fill_views(self, values: np.ndarray, bad: np.ndarray, slices: Sequence[int]) -> None:
        for i, a in zip(*np.nonzero(bad.any(axis=-1)), strict=True):
            good = ~bad[i, a]
            if not good.any():
                raise InputError(self.path, f"slice z={slices[i]}: view {a} of the sinogram has no finite sample "
                                            "to interpolate from")
            row = values[i, a]
            row[~good] = np.interp(np.flatnonzero(~good), np.flatnonzero(good), row[good])

    @property
    def active(self) -> bool:
        """``--nonfinite mask`` was asked for."""
        return self.policy == "mask"

    def drop_lines(self, mask: Any) -> Any:
        """The sampling mask ``(ky, kx)`` (a torch tensor) without the ky lines that held a non-finite sample."""
        if not self.dropped_lines:
            return mask
        mask = mask.clone()
        mask[sorted(self.dropped_lines), :] = 0
        return mask

    def record(self, output: str) -> dict[str, Any]:
        """What the output's record says about the filled values (``output``: how the output marks them)."""
        per_slice = {str(z): n for z, n in sorted(self.counts.items()) if n}
        rec: dict[str, Any] = {"policy": self.policy, "variable": self.variable, "count": sum(per_slice.values()),
                               "per_slice": per_slice, "slices_read": len(self.counts),
                               "fill": _FILL.get(self.variable or "", "nothing to fill")}
        if self.variable == "kspace":
            rec["ky_lines_dropped"] = sorted(self.dropped_lines)
        rec["output"] = output if self.variable == "image" and per_slice else "nothing marked (no voxel was filled)"
        return rec

    def marked(self, slices: Sequence[int], prepare: Callable[[np.ndarray], np.ndarray] | None = None
               ) -> np.ndarray | None:
        """Bool ``(S, H', W')`` of the output voxels made from filled input voxels of ``slices`` (``None``: none).

        ``prepare`` maps the input-grid float marks ``(S, H, W)`` the way the image was prepared (crop,
        block mean); any voxel it gives a non-zero value is marked.
        """
        shapes = [self.marks[int(z)].shape for z in slices if int(z) in self.marks]
        if not shapes:
            return None
        base = np.zeros((len(slices), *shapes[0]), np.float32)
        for i, z in enumerate(slices):
            if int(z) in self.marks:
                base[i] = self.marks[int(z)]
        return (prepare(base) if prepare is not None else base) > 0

    def mark_output(self, info: dict[str, Any], slices: Sequence[int], arrays: Sequence[np.ndarray | None],
                    prepare: Callable[[np.ndarray], np.ndarray] | None = None) -> None:
        """``reconstruct``: record in ``info["nonfinite"]`` and set the marked voxels of ``arrays`` ``(S, H', W')``
        to NaN in place (``prepare``: see :meth:`marked`); no-op under ``refuse``."""
        if not self.active:
            return
        marks = self.marked(slices, prepare)
        info["nonfinite"] = self.record("the voxels made from filled input voxels are NaN in 'image' (and 'std')")
        if marks is None:
            return
        for array in arrays:
            if array is not None:
                array[marks] = np.nan
        info["nonfinite"]["output_voxels_nan"] = int(marks.sum())


def screen_of(args: argparse.Namespace, path: str | os.PathLike | None = None) -> Screen:
    """The :class:`Screen` of a command's input (kept in ``args._nonfinite``, not recorded as an option)."""
    screen = getattr(args, "_nonfinite", None)
    if screen is None:
        where = path if path is not None else getattr(args, "input", None)
        screen = Screen(getattr(args, "nonfinite", "refuse"), where)
        args._nonfinite = screen
    return screen
