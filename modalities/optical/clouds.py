"""Paired cloudy/clear Sentinel-2 data from real cloud shapes, and the shared remote data layout.

A cloud-removal model needs a cloudy scene *and* the clear scene under it, which no acquisition
gives. Following the simulation protocol of cloud-removal benchmarks (e.g. Sarukkai et al.,
WACV 2020; Ebel et al., SEN12MS-CR-TS 2022, which blend real cloud masks onto clear dates), a
cloudy scene is the per-pixel alpha blend

    cloudy = (1 - a) * clear + a * cloud_layer,    a = clip((p - 0.4) / 0.4, 0, 1),

with ``p`` a **real** cloud probability map (s2cloudless probabilities of one of 68 dates of the
same place, ``s2_cloud_probability.npy``) -- transparent below s2cloudless' default threshold 0.4,
opaque from 0.8 (:func:`cloud_opacity`) -- and ``cloud_layer`` the 13-band top-of-atmosphere
reflectance of a **real** overcast acquisition of the same place (the cloudiest date of
``s2_l1c_reference_scenes.npy``), so both the shapes and the cloud spectra are measured, not
drawn from a noise model. The mask handed to models and metrics is the real binary cloud mask of
the same shape date (``s2_cloud_mask.npy``).

Data layout (``data/demo/sentinel2``, a copy of the shared ``remote`` folder):
``s2_l1c_reference_scenes.npy`` ``(5, 101, 100, 13)`` float32 TOA reflectance (dates 0 and 1
cloudy -- 0 overcast, 1 hazy --, dates 2-4 clear: :func:`clear_dates` finds them with a
blue-band test), ``s2_cloud_probability.npy`` / ``s2_cloud_mask.npy`` ``(68, 101, 100, 1)``.
Every function takes ``(T, y, x, band)`` stacks as they are stored, and returns bands-first
``(B, H, W)`` scenes.

Dates: the reference scenes carry no timestamps of their own; each is one date of the 68-date
series (``s2_timestamps.json``), found by matching its NDVI (B08, B04) to the series' NDVI
(``s2_ndvi.npy`` of the shared data): the match is exact for all five
(:data:`REFERENCE_SERIES_INDEX`; ``tests/test_cloud_trust.py`` re-derives it). The three clear
dates are 2015-07-11, 2015-08-30 and 2015-09-09: the last two are ten days apart and nearly
identical, so evaluation pairs are chosen at least three weeks apart (:func:`date_pairs`).

Compositing (:func:`feather`, :func:`composite`): a reconstruction keeps every observed pixel --
outside the cloud mask the output *is* the input -- and blends into the estimate over a few
pixels inside the mask (a distance-transform ramp), so no hard edge appears at the mask border.
"""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path

import numpy as np

__all__ = ["REMOTE_DIR", "REFERENCE_SERIES_INDEX", "load_stack", "clear_dates", "cloud_layer_date", "shape_dates",
           "cloud_opacity", "blend", "cloudy_stack", "multitemporal_mask", "reference_dates", "date_pairs", "feather",
           "composite"]

#: The Sentinel-2 arrays shipped with the repository (copies of the shared data's ``remote`` folder).
REMOTE_DIR = Path(__file__).resolve().parents[2] / "data" / "demo" / "sentinel2"
#: blue-band (B02) reflectance above which a pixel counts as cloudy/hazy in :func:`clear_dates`
BLUE_CLOUD = 0.15
#: B02 increase over a clear date that flags a pixel cloudy in :func:`multitemporal_mask`
BLUE_INCREASE = 0.04
#: position of each reference scene (``s2_l1c_reference_scenes.npy``) in the 68-date series
#: (``s2_timestamps.json``): exact NDVI match (see the module doc)
REFERENCE_SERIES_INDEX = (2, 1, 4, 3, 0)


def load_stack(path: str | Path) -> np.ndarray:
    """A ``.npy`` stack ``(T, y, x, band)`` (a 3-D ``(y, x, band)`` array becomes ``T = 1``)."""
    from scorerecon.errors import InputError

    try:
        arr = np.load(path, allow_pickle=False)
    except Exception as exc:
        raise InputError(path, f"not a readable .npy array ({type(exc).__name__}: {exc})") from None
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4 or not np.issubdtype(arr.dtype, np.number):
        raise InputError(path, f"expected a numeric (time, y, x, band) array, got shape {arr.shape} {arr.dtype}")
    if not np.isfinite(arr).all():
        raise InputError(path, "array holds NaN or infinite values")
    return arr


def clear_dates(stack: np.ndarray, max_cloudy_fraction: float = 0.01, blue: int = 1) -> list[int]:
    """Dates whose fraction of pixels with B02 > 0.15 (bright: cloud or haze) is below the limit."""
    frac = (stack[..., blue] > BLUE_CLOUD).mean(axis=(1, 2))
    return [int(t) for t in np.flatnonzero(frac < max_cloudy_fraction)]


def cloud_layer_date(stack: np.ndarray, blue: int = 1) -> int:
    """The cloudiest date (highest median blue reflectance): the real cloud-reflectance layer."""
    return int(np.argmax(np.median(stack[..., blue], axis=(1, 2))))


def shape_dates(mask_stack: np.ndarray, low: float = 0.05, high: float = 0.95) -> list[int]:
    """Dates whose cloud mask covers between ``low`` and ``high`` of the area (useful shapes)."""
    frac = np.asarray(mask_stack, bool).reshape(mask_stack.shape[0], -1).mean(1)
    return [int(t) for t in np.flatnonzero((frac >= low) & (frac <= high))]


def cloud_opacity(probability: np.ndarray, low: float = 0.4, high: float = 0.8) -> np.ndarray:
    """Blend weight from a cloud probability: 0 below ``low`` (s2cloudless' threshold), 1 above ``high``."""
    return np.clip((np.asarray(probability, np.float64) - low) / (high - low), 0.0, 1.0)


def blend(clear: np.ndarray, alpha: np.ndarray, layer: np.ndarray) -> np.ndarray:
    """``(1 - a) clear + a layer`` for bands-first ``(B, H, W)`` scenes and an ``(H, W)`` alpha."""
    a = np.clip(np.asarray(alpha, np.float64), 0.0, 1.0)[None]
    return ((1 - a) * clear + a * layer).astype(np.float32)


def cloudy_stack(clear: np.ndarray, probability: np.ndarray, layer: np.ndarray) -> np.ndarray:
    """Cloudy versions ``(T, y, x, band)`` of clear dates ``(T, y, x, band)``: date ``t`` under the
    real cloud of ``probability[t]`` ``(T, y, x)``; ``layer`` is the overcast scene ``(y, x, band)``."""
    if len(clear) != len(probability):
        raise ValueError(f"{len(clear)} clear dates but {len(probability)} cloud maps")
    layer_bf = np.moveaxis(layer, -1, 0)
    return np.stack([np.moveaxis(blend(np.moveaxis(c, -1, 0), cloud_opacity(p), layer_bf), 0, -1)
                     for c, p in zip(clear, probability, strict=True)])


def multitemporal_mask(cloudy: np.ndarray, other_clear: np.ndarray, blue: int = 1) -> np.ndarray:
    """Cloud mask without a given one: B02 brighter than on a clear date by more than 0.04.

    The multi-temporal blue test of MACCS/MAJA (Hagolle et al., RSE 2010) in its simplest form; it
    uses only the cloudy scene and another clear date, never the reference.
    """
    return (cloudy[blue] - other_clear[blue]) > BLUE_INCREASE


def reference_dates(root: str | Path = REMOTE_DIR) -> list[_dt.date]:
    """Acquisition date of each reference scene, from ``s2_timestamps.json`` in ``root``."""
    stamps = json.loads((Path(root) / "s2_timestamps.json").read_text())
    return [_dt.datetime.fromisoformat(stamps[i]).date() for i in REFERENCE_SERIES_INDEX]


def date_pairs(dates: list[_dt.date], candidates: list[int], min_gap_days: int = 21) -> list[tuple[int, int]]:
    """Ordered ``(target, other)`` pairs of ``candidates`` whose dates lie at least ``min_gap_days`` apart.

    A target restored from a date ten days away (a near-duplicate) says little about cloud
    removal: the nearest-date baseline is then almost the answer.
    """
    return [(t, o) for t in candidates for o in candidates
            if t != o and abs((dates[t] - dates[o]).days) >= min_gap_days]


def feather(mask: np.ndarray, radius: float = 3.0) -> np.ndarray:
    """Blend weight of the estimate ``(H, W)``: 0 outside the mask, ``clip(d / radius, 0, 1)`` inside.

    ``d`` is the Euclidean distance (pixels) to the nearest pixel outside the mask
    (``scipy.ndimage.distance_transform_edt``): 1 on the mask's first ring, so ``radius <= 1``
    is a hard composite. A mask without any clear pixel gives weight 1 everywhere.
    """
    from scipy import ndimage

    mask = np.asarray(mask, bool)
    if mask.all():
        return np.ones(mask.shape)
    if radius <= 1:
        return mask.astype(np.float64)
    return np.clip(ndimage.distance_transform_edt(mask) / float(radius), 0.0, 1.0)


def composite(observed: np.ndarray, estimate: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """``w estimate + (1 - w) observed`` (float64) for ``(B, H, W)`` scenes; where ``w == 0`` exactly ``observed``.

    Float32 input survives the float64 round trip bit for bit where ``w == 0``.
    """
    w = np.asarray(weight, np.float64)[None]
    obs = np.asarray(observed, np.float64)
    return np.where(w > 0, w * np.asarray(estimate, np.float64) + (1 - w) * obs, obs)
