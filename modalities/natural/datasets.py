"""Training data for the natural-image priors: random RGB patches of Kodak + scikit-image images.

Sources: the 24 Kodak PhotoCD images (768x512 RGB; a local copy named by ``DEFAULT_KODAK`` or the config's
``kodak:``; ``kodak: null`` leaves Kodak out, so a prior trains from registry packages alone) minus the
held-out evaluation images :data:`HOLDOUT` (kodim01, 05, 13, 19, 23: a building, motorbikes, a
river scene, a lighthouse, parrots -- five different kinds of texture), plus scikit-image's
bundled RGB photographs astronaut, coffee, chelsea and rocket (``camera`` is grey and skipped),
plus, with the config key ``photos`` (the folder ``make photos`` fills), the training split of
the registry photographs (:mod:`.photos`: ~100 colour and grey photos, held-out scenes never
included). Every source file is recorded in the model card with its sha256 so the evaluation can
refuse images the prior trained on.

Patches are random crops with a random flip / 90-degree rotation (the dihedral group: natural
image statistics are close to invariant under it) from an image drawn with probability
proportional to ``area ** area_power`` (config key, default 1: every pixel equally likely; 0.5
keeps a few 8-megapixel photos from drowning the 640-px ones), scaled from ``[0, 1]`` to the model range
``[-1, 1]`` (a fixed normalisation, recorded in the card like :class:`~scorerecon.models.data.
PatchDataset`'s).

Three datasets share that sampler (the ``data.kind`` of a training YAML):

* :class:`NaturalPatches` -- clean patches, for the unconditional prior;
* :class:`SuperResolutionPairs` -- ``(HR patch, bicubic-upsampled bicubic-downsampled patch)``:
  SR3's conditioning on the upsampled low-resolution image (Saharia et al., TPAMI 2022);
* :class:`LowLightPairs` -- ``(patch, dark noisy capture)`` with exposure / gamma drawn per
  patch from ranges around the benchmark's setting.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import skimage.data
import torch

from scorerecon.errors import InputError
from scorerecon.modalities.io.store import sha256_file
from scorerecon.modalities.natural.degradations import BicubicDown, LowLight, bicubic_resize
from scorerecon.modalities.natural.photos import photo_files

__all__ = [
    "DEFAULT_KODAK",
    "HOLDOUT",
    "SKIMAGE_IMAGES",
    "LowLightPairs",
    "NaturalPatches",
    "SuperResolutionPairs",
    "lowlight_condition",
    "load_rgb",
    "training_sources",
]

#: Kodak images never used for training (the evaluation set).
HOLDOUT: tuple[str, ...] = ("kodim01", "kodim05", "kodim13", "kodim19", "kodim23")
#: scikit-image's bundled RGB photographs used for training (camera is grey: skipped).
SKIMAGE_IMAGES: tuple[str, ...] = ("astronaut", "coffee", "chelsea", "rocket")
#: the Kodak folder, relative to the repository root (the training ``base_dir``).
#: where the Kodak suite is read from when a config names none: ``$SCORERECON_KODAK``, else ``data/kodak``
#: (no registry package ships Kodak: copy or link the 24 PNGs there).
DEFAULT_KODAK = os.environ.get("SCORERECON_KODAK", "data/kodak")
Tensor = torch.Tensor
NORMALIZATION = {"method": "fixed", "values": [0.0, 1.0], "range": [-1.0, 1.0], "clip": False}


def load_rgb(path: str | os.PathLike) -> np.ndarray:
    """An image file as float32 ``(H, W, 3)`` in ``[0, 1]``, read by the project's image reader.

    Integer pixels are scaled by their type's maximum; grey (``L``) is repeated to RGB.
    """
    from scorerecon.modalities.io.image import read

    return rgb_from_dataset(next(iter(read([Path(path)]).values())), path)


def rgb_from_dataset(ds: Any, path: str | os.PathLike | None = None) -> np.ndarray:
    """An image dataset ``image (band, y, x)`` (the image reader's layout, or a store ingested from
    one) as float32 ``(H, W, 3)`` in ``[0, 1]``, as :func:`load_rgb` reads files; ``path`` names it in errors."""
    if "image" not in ds.data_vars or tuple(ds["image"].dims) != ("band", "y", "x") or "band" not in ds.coords:
        raise InputError(path, "expected an image (band, y, x) with named bands (R, G, B or L), as ingested from "
                               "a PNG / JPEG / TIFF")
    arr = ds["image"].values
    bands = [str(b) for b in ds["band"].values]
    if "R" not in bands and "L" not in bands:
        raise InputError(path, f"no colour or grey band to restore (bands: {', '.join(bands)})")
    if np.issubdtype(arr.dtype, np.integer):
        arr = arr.astype(np.float32) / float(np.iinfo(arr.dtype).max)
    else:
        arr = arr.astype(np.float32)
    colour = [bands.index(b) for b in ("R", "G", "B")] if "R" in bands else [bands.index("L")] * 3
    out = np.moveaxis(arr[colour], 0, -1)
    if not np.isfinite(out).all() or out.min() < 0 or out.max() > 1:
        raise InputError(path, "pixel values are not in [0, 1] after scaling to the file's integer range")
    return np.ascontiguousarray(out)


def _skimage_path(name: str) -> Path:
    return Path(skimage.data.__file__).parent / {"rocket": "rocket.jpg"}.get(name, f"{name}.png")


def training_sources(config: dict[str, Any], base_dir: str | os.PathLike | None = None) -> list[Path]:
    """The image files a ``data`` config trains on (Kodak minus the hold-out, skimage's, the training photos)."""
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    files: list[Path] = []
    kodak_setting = config.get("kodak", DEFAULT_KODAK)
    if kodak_setting is not None:  # ``kodak: null``: registry sources only (reproducible on any machine)
        kodak = Path(kodak_setting)
        kodak = kodak if kodak.is_absolute() else base / kodak
        if not kodak.is_dir():
            raise InputError(kodak, "Kodak folder not found (set `kodak: null` to train without it)")
        holdout = set(config.get("holdout", HOLDOUT))
        files = [p for p in sorted(kodak.glob("kodim*.png")) if p.stem not in holdout]
        if not files:
            raise InputError(kodak, "no kodim*.png training images (all held out?)")
    files += [_skimage_path(n) for n in config.get("skimage", SKIMAGE_IMAGES)]
    if config.get("photos"):
        photos = Path(config["photos"])
        files += photo_files(photos if photos.is_absolute() else base / photos, "train")
    if not files:
        raise InputError(None, "the data config names no training images (no Kodak, skimage or photos)")
    return files


@lru_cache(maxsize=4)
def _load_all(paths: tuple[Path, ...]) -> tuple[np.ndarray, ...]:
    return tuple(np.ascontiguousarray((load_rgb(p) * 255).round().astype(np.uint8)) for p in paths)


class NaturalPatches:
    """Random RGB patches in ``[-1, 1]`` (unconditional prior); see the module docstring.

    Config keys: ``patch_size`` ``[P, P]``, ``kodak`` (folder), ``holdout`` (Kodak stems),
    ``skimage`` (bundled image names), ``photos`` (the ``make photos`` folder; its training
    split is added), ``area_power`` (image weights ``area ** area_power``, default 1).
    """

    channels = 3
    cond_channels = 0

    def __init__(self, config: dict[str, Any], base_dir: str | os.PathLike | None = None) -> None:
        self.config = dict(config)
        self.patch_size = [int(s) for s in config["patch_size"]]
        if len(self.patch_size) != 2 or self.patch_size[0] != self.patch_size[1]:
            raise InputError(None, f"data.patch_size must be square 2-D, got {self.patch_size}")
        self.paths = training_sources(config, base_dir)
        self.images = _load_all(tuple(self.paths))
        small = [p for p, im in zip(self.paths, self.images, strict=True) if min(im.shape[:2]) < self.patch_size[0]]
        if small:
            raise InputError(small[0], f"is smaller than data.patch_size {self.patch_size}")
        self.area_power = float(config.get("area_power", 1.0))
        areas = np.array([im.shape[0] * im.shape[1] for im in self.images], dtype=float) ** self.area_power
        self._weights = areas / areas.sum()  # area_power 1: every pixel equally likely

    def crops(self, batch_size: int, rng: np.random.Generator) -> np.ndarray:
        """``(B, P, P, 3)`` float32 crops in ``[0, 1]`` with random dihedral augmentation."""
        p = self.patch_size[0]
        out = np.empty((batch_size, p, p, 3), dtype=np.float32)
        for b, k in enumerate(rng.choice(len(self.images), size=batch_size, p=self._weights)):
            im = self.images[k]
            r, c = rng.integers(0, im.shape[0] - p + 1), rng.integers(0, im.shape[1] - p + 1)
            crop = im[r: r + p, c: c + p]
            crop = np.rot90(crop, int(rng.integers(4)))
            out[b] = (crop[:, ::-1] if rng.random() < 0.5 else crop) / 255.0
        return out

    @staticmethod
    def to_model(x01: np.ndarray | Tensor) -> Tensor:
        """``(B, H, W, 3)`` numpy or ``(B, 3, H, W)`` torch in ``[0, 1]`` -> ``(B, 3, H, W)`` in ``[-1, 1]``."""
        t = torch.from_numpy(np.ascontiguousarray(x01.transpose(0, 3, 1, 2))) if isinstance(x01, np.ndarray) else x01
        return (2.0 * t - 1.0).float()

    def sample_batch(self, batch_size: int, rng: np.random.Generator) -> Tensor | tuple[Tensor, Tensor]:
        return self.to_model(self.crops(batch_size, rng))

    def describe(self) -> dict[str, Any]:
        return {
            "kind": f"{type(self).__module__}:{type(self).__name__}",
            "sources": [{"name": p.name, "path": str(p), "sha256": sha256_file(p)} for p in self.paths],
            "holdout": list(self.config.get("holdout", HOLDOUT)),
            "patch_size": self.patch_size, "channels": self.channels, "cond_channels": self.cond_channels,
            "augmentation": "random crop, flip, rot90", "normalization": dict(NORMALIZATION),
            "area_power": self.area_power,
            **({"photos": str(self.config["photos"])} if self.config.get("photos") else {}),
        }


class SuperResolutionPairs(NaturalPatches):
    """``(x0, cond)``: HR patch and its bicubic-down-then-up version (config key ``scale``)."""

    cond_channels = 3

    def __init__(self, config: dict[str, Any], base_dir: str | os.PathLike | None = None) -> None:
        super().__init__(config, base_dir)
        self.scale = int(config.get("scale", 4))
        p = self.patch_size[0]
        self.down = BicubicDown((p, p), self.scale)

    def sample_batch(self, batch_size: int, rng: np.random.Generator) -> tuple[Tensor, Tensor]:
        x = torch.from_numpy(self.crops(batch_size, rng).transpose(0, 3, 1, 2).copy()).double()
        lr = self.down.A(x)
        up = bicubic_resize(lr, tuple(self.patch_size))
        return self.to_model(x), self.to_model(up)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "scale": self.scale,
                "cond": "bicubic-upsampled bicubic (antialiased, Pillow kernel) downsampled patch"}


def lowlight_condition(dark: np.ndarray, gain: float) -> np.ndarray:
    """The low-light model's condition: the dark capture times a fixed ``gain``, clipped to ``[0, 1]``.

    A dark capture spans ~5 % of the range (about -0.95 in model units), which a tiny UNet
    trained for minutes barely resolves through its first convolution (a first model conditioned
    on the raw dark image reached 15 dB, no better than gamma correction); a fixed linear gain
    keeps all the information and puts it on the data's scale.
    """
    return np.clip(gain * dark, 0.0, 1.0).astype(np.float32)


class LowLightPairs(NaturalPatches):
    """``(x0, cond)``: patch and a :class:`LowLight` capture of it, parameters drawn per patch.

    Config keys ``exposure``, ``gamma`` (``[low, high]`` uniform ranges), ``peak``, ``read_noise``,
    ``cond_gain`` (see :func:`lowlight_condition`).
    """

    cond_channels = 3

    def __init__(self, config: dict[str, Any], base_dir: str | os.PathLike | None = None) -> None:
        super().__init__(config, base_dir)
        self.exposure = [float(v) for v in config.get("exposure", [0.08, 0.25])]
        self.gamma = [float(v) for v in config.get("gamma", [1.2, 1.8])]
        self.peak = float(config.get("peak", 600.0))
        self.read_noise = float(config.get("read_noise", 0.01))
        self.cond_gain = float(config.get("cond_gain", 1.0))

    def sample_batch(self, batch_size: int, rng: np.random.Generator) -> tuple[Tensor, Tensor]:
        x = self.crops(batch_size, rng)
        dark = np.empty_like(x)
        for b in range(batch_size):
            op = LowLight(float(rng.uniform(*self.exposure)), float(rng.uniform(*self.gamma)), self.peak,
                          self.read_noise)
            dark[b] = lowlight_condition(op(x[b], rng), self.cond_gain)
        return self.to_model(x), self.to_model(dark)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "exposure": self.exposure, "gamma": self.gamma, "peak": self.peak,
                "read_noise": self.read_noise, "cond_gain": self.cond_gain,
                "cond": "LowLight capture (modalities.natural.degradations) x cond_gain, clipped"}
