"""Training-time augmentation of prior patches: scale, orientation, contrast and noise.

A prior trained on one subject at one pixel spacing and one contrast is fragile to another
subject's scale, orientation and intensity mapping (issue 15). :class:`Augmentation` holds the
``data.augment`` section of a training YAML and applies, per patch, with the caller's numpy
``Generator`` (so a resumed training draws the same numbers):

* ``zoom: {range: [lo, hi], prob, spacing}`` — a scale factor ``s`` (log-uniform in
  ``[lo, hi]``) applied by *reading a region of ``patch / s`` pixels* and resampling it to the
  patch size (:func:`resample`): ``s > 1`` magnifies (finer output spacing), ``s < 1`` shrinks.
  ``spacing: source`` (default) zooms around each source's own pixel grid; ``spacing:
  reference`` first maps every source to the first source's in-plane spacing. The patch
  dataset (:mod:`scorerecon.models.data`) turns ``s`` into per-dim region extents, which also
  corrects anisotropic voxels when slicing along other axes.
* ``flip: true`` — each spatial axis flipped with probability 1/2; ``rot90: true`` — a rotation
  by ``k * 90`` degrees, ``k`` uniform in 0..3, in the last two axes (0 or 180 degrees when the
  patch is not square).
* ``intensity: {gamma, contrast, brightness, prob}`` — on the intensities rescaled from the
  model range to ``[0, 1]``: ``u ** g`` with ``g`` log-uniform in ``gamma``, then ``c * u + b``
  with ``c``, ``b`` uniform in ``contrast`` / ``brightness``; mapped back (clipped when the
  normalisation clips). For modalities without absolute units (MRI, photographs); leave it out
  for CT in HU, whose units are physical.
* ``noise: {std: [lo, hi], prob}`` — additive Gaussian noise with a standard deviation uniform
  in ``std``, in units of the model range width, like a measurement's.

Hand-written on purpose: MONAI's random transforms (``RandFlip``, ``RandRotate90``,
``RandAdjustContrast``, ``RandGaussianNoise``, ``RandZoom``) draw from a legacy
``np.random.RandomState`` (``set_random_state`` takes no ``Generator``), whose state would have
to be checkpointed beside the training's ``Generator``; each of them is a one-line numpy
operation here, and ``RandZoom`` keeps the array size by cropping/padding one fixed region,
whereas zooming out here reads a larger region of the volume (no padding). The resampling
itself is ``torch.nn.functional.interpolate`` (antialiased bilinear for 2-D patches, trilinear
for 3-D).
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch

from scorerecon.errors import InputError

#: The keys of ``data.augment`` and their defaults once a section is switched on.
DEFAULTS: dict[str, dict[str, Any]] = {
    "zoom": {"range": [0.75, 1.33], "prob": 1.0, "spacing": "source"},
    "intensity": {"gamma": [0.7, 1.5], "contrast": [1.0, 1.0], "brightness": [0.0, 0.0], "prob": 1.0},
    "noise": {"std": [0.0, 0.02], "prob": 0.5},
}
KEYS = ("zoom", "flip", "rot90", "intensity", "noise")


def _interval(section: str, key: str, value: Any, positive: bool = False) -> list[float]:
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise InputError(None, f"data.augment.{section}.{key} must be [low, high], got {value!r}") from None
    if not (np.isfinite(lo) and np.isfinite(hi)) or hi < lo or (positive and lo <= 0):
        raise InputError(None, f"data.augment.{section}.{key} must be finite with low <= high"
                               f"{' and low > 0' if positive else ''}, got {value!r}")
    return [lo, hi]


class Augmentation:
    """The resolved ``data.augment`` section; ``None``/``{}`` means no augmentation at all."""

    def __init__(self, config: dict[str, Any] | None) -> None:
        config = dict(config or {})
        unknown = sorted(set(config) - set(KEYS))
        if unknown:
            raise InputError(None, f"data.augment: unknown key(s) {unknown}; expected {list(KEYS)}")
        self.flip = bool(config.get("flip", False))
        self.rot90 = bool(config.get("rot90", False))
        self.zoom = self._section(config, "zoom")
        self.intensity = self._section(config, "intensity")
        self.noise = self._section(config, "noise")
        if self.zoom is not None:
            self.zoom["range"] = _interval("zoom", "range", self.zoom["range"], positive=True)
            if self.zoom["spacing"] not in ("source", "reference"):
                raise InputError(None, f"data.augment.zoom.spacing must be 'source' or 'reference', "
                                       f"got {self.zoom['spacing']!r}")
        if self.intensity is not None:
            self.intensity["gamma"] = _interval("intensity", "gamma", self.intensity["gamma"], positive=True)
            self.intensity["contrast"] = _interval("intensity", "contrast", self.intensity["contrast"], positive=True)
            self.intensity["brightness"] = _interval("intensity", "brightness", self.intensity["brightness"])
        if self.noise is not None:
            self.noise["std"] = _interval("noise", "std", self.noise["std"])
            if self.noise["std"][0] < 0:
                raise InputError(None, f"data.augment.noise.std must be >= 0, got {self.noise['std']}")

    @staticmethod
    def _section(config: dict[str, Any], key: str) -> dict[str, Any] | None:
        value = config.get(key)
        if value is None or value is False:
            return None
        value = {} if value is True else value
        if not isinstance(value, dict):
            raise InputError(None, f"data.augment.{key} must be a mapping or true, got {value!r}")
        unknown = sorted(set(value) - set(DEFAULTS[key]))
        if unknown:
            raise InputError(None, f"data.augment.{key}: unknown key(s) {unknown}; expected {sorted(DEFAULTS[key])}")
        out = {**copy.deepcopy(DEFAULTS[key]), **copy.deepcopy(value)}
        prob = float(out["prob"])
        if not 0.0 <= prob <= 1.0:
            raise InputError(None, f"data.augment.{key}.prob must be in [0, 1], got {out['prob']!r}")
        out["prob"] = prob
        return out

    @property
    def active(self) -> bool:
        return any((self.flip, self.rot90, self.zoom, self.intensity, self.noise))

    def describe(self) -> dict[str, Any] | None:
        """The resolved section for the model card (``None`` when nothing is augmented)."""
        if not self.active:
            return None
        return {"zoom": self.zoom, "flip": self.flip, "rot90": self.rot90, "intensity": self.intensity,
                "noise": self.noise}

    # --- draws --------------------------------------------------------------------------------
    def draw_zoom(self, rng: np.random.Generator) -> float:
        """A scale factor (1.0 when zoom is off or not drawn this time)."""
        if self.zoom is None or rng.random() >= self.zoom["prob"]:
            return 1.0
        lo, hi = self.zoom["range"]
        return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))

    def apply(self, patch: np.ndarray, rng: np.random.Generator, value_range: tuple[float, float],
              clip: bool) -> np.ndarray:
        """Flips, rotation, intensity and noise on a normalised patch ``(C, *spatial)``."""
        if self.flip:
            axes = tuple(1 + i for i in range(patch.ndim - 1) if rng.random() < 0.5)
            if axes:
                patch = np.flip(patch, axis=axes)
        if self.rot90:
            square = patch.shape[-1] == patch.shape[-2]
            k = int(rng.integers(4)) if square else 2 * int(rng.integers(2))
            patch = np.rot90(patch, k=k, axes=(-2, -1))
        a, b = (float(v) for v in value_range)
        if self.intensity is not None and rng.random() < self.intensity["prob"]:
            lo, hi = self.intensity["gamma"]
            gamma = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
            contrast = float(rng.uniform(*self.intensity["contrast"]))
            brightness = float(rng.uniform(*self.intensity["brightness"]))
            unit = np.clip((patch - a) / (b - a), 0.0, 1.0) ** gamma * contrast + brightness
            patch = (np.clip(unit, 0.0, 1.0) if clip else unit) * (b - a) + a
        if self.noise is not None and rng.random() < self.noise["prob"]:
            std = float(rng.uniform(*self.noise["std"])) * (b - a)
            patch = patch + std * rng.standard_normal(patch.shape)
            if clip:
                patch = np.clip(patch, a, b)
        return np.ascontiguousarray(patch, dtype=np.float32)


def dihedral(x: torch.Tensor, k: int, inverse: bool = False) -> torch.Tensor:
    """The ``k``-th (0..7) of the 8 flips / quarter turns of the last two dims of a tensor (or its inverse).

    The orientation group the priors are trained under (``flip`` + ``rot90``): test-time
    self-ensembles average over it and test-time adaptation draws from it.
    """
    if not inverse:
        x = x.flip(-1) if k >= 4 else x
        return torch.rot90(x, k % 4, dims=(-2, -1))
    x = torch.rot90(x, -(k % 4), dims=(-2, -1))
    return x.flip(-1) if k >= 4 else x


def resample(block: np.ndarray, shape: list[int] | tuple[int, ...]) -> np.ndarray:
    """``(C, *spatial)`` resampled to ``(C, *shape)``: antialiased bilinear (2-D) or trilinear (3-D)."""
    if tuple(block.shape[1:]) == tuple(shape):
        return block
    x = torch.from_numpy(np.ascontiguousarray(block, dtype=np.float32))[None]
    if len(shape) == 2:
        out = torch.nn.functional.interpolate(x, size=tuple(shape), mode="bilinear", align_corners=False,
                                              antialias=True)
    else:
        out = torch.nn.functional.interpolate(x, size=tuple(shape), mode="trilinear", align_corners=False)
    return out[0].numpy()


__all__ = ["Augmentation", "dihedral", "resample", "DEFAULTS", "KEYS"]
