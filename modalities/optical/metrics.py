"""Quality metrics of pan-sharpening and cloud removal, with their conventions stated.

Arrays are ``(C, H, W)`` (bands first) in data units (DN or reflectance), reference first.

Pan-sharpening, reduced resolution (Wald's protocol; reference = the original MS):

* **ERGAS** (Wald 2002): ``100 / r * sqrt(mean_b (RMSE_b / mu_b)^2)`` with ``r`` the PAN/MS
  resolution ratio and ``mu_b`` the mean of reference band ``b``. *Is* torchmetrics'
  ``error_relative_global_dimensionless_synthesis(preds, target, ratio=r)`` (same definition as
  the pan-sharpening toolbox of Vivone et al. 2015). Lower is better, 0 for identical images.
* **SAM** (Yuhas et al. 1992), degrees: the per-pixel angle between spectra averaged over pixels.
  torchmetrics' ``spectral_angle_mapper`` (radians) converted to degrees; the toolbox skips
  pixels with a zero spectrum, torchmetrics does not (our data have none). Over a mask (cloud
  metrics) the same angle is computed in numpy, skipping zero spectra like the toolbox.
* **Q2n** (Garzelli & Nencini, IEEE GRSL 2009): the hypercomplex generalisation of the universal
  image quality index: each pixel's ``C`` bands (zero-padded to ``2^n``: Q4 for 3-4 bands, Q8 for
  5-8) form a quaternion/octonion; per 32x32 block (shift 32) the modulus of the hypercomplex
  correlation times the contrast and mean-bias terms, averaged over blocks. torchmetrics has no
  Q2n; this follows the definition of ``q2n.m`` / ``onions_quality.m`` of the toolbox (block
  normalisation with the reference's mean and sample std, Cayley-Dickson product).
* **SCC** (Zhou, Civco & Silander 1998): correlation coefficient of the Laplacian high-pass of
  fused and reference (``scipy.ndimage.laplace``), averaged over bands. Higher is better.

Pan-sharpening, full resolution (no reference; Alparone et al., PE&RS 2008):

* **D_lambda**, **D_s**, **QNR** = ``(1 - D_lambda)(1 - D_s)`` are torchmetrics'
  ``spectral_distortion_index``, ``spatial_distortion_index`` and ``quality_with_no_reference``
  (p = q = 1, alpha = beta = 1). Convention difference: torchmetrics' UIQI uses an 11x11
  Gaussian window (sigma 1.5) where the toolbox uses 32x32 blocks, and we pass the *MTF-degraded*
  pan as ``pan_lr`` (:mod:`.degradation`), where torchmetrics would otherwise use a 7x7 box
  filter. Values are therefore comparable between methods here, not with published tables.

Cloud removal (reference = the clear date): **PSNR** with data range = the maximum of the
reference over all bands (one value per scene), **SSIM** (scikit-image, 7x7 uniform window, same
data range) averaged over the pixels of a region, **SAM** (degrees) and **MAE** -- each inside
and outside a boolean mask; **coverage** of the central interval ``mean +- z std`` of posterior
samples (Gaussian quantile ``z`` of the nominal level, 1.645 for 90 %) over the masked pixels.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from scipy import ndimage
from scipy.stats import norm
from skimage.metrics import structural_similarity

__all__ = ["ergas", "sam", "q2n", "scc", "qnr", "pansharpen_reduced", "region_metrics", "interval_coverage",
           "cloud_metrics"]


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a, dtype=np.float64))[None]


def ergas(reference: np.ndarray, fused: np.ndarray, ratio: int) -> float:
    """ERGAS (lower is better); torchmetrics' definition with ``ratio`` = PAN/MS resolution ratio."""
    from torchmetrics.functional.image import error_relative_global_dimensionless_synthesis

    return float(error_relative_global_dimensionless_synthesis(_t(fused), _t(reference), ratio=ratio))


def sam(reference: np.ndarray, fused: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean spectral angle in degrees (over ``mask`` pixels when given)."""
    if mask is None:
        from torchmetrics.functional.image import spectral_angle_mapper

        return math.degrees(float(spectral_angle_mapper(_t(fused), _t(reference))))
    ref, fus = np.asarray(reference, np.float64)[:, mask], np.asarray(fused, np.float64)[:, mask]
    norms = np.linalg.norm(ref, axis=0) * np.linalg.norm(fus, axis=0)
    valid = norms > 0  # as the toolbox: pixels with a zero spectrum have no angle
    if not valid.any():
        return float("nan")
    cos = (ref[:, valid] * fus[:, valid]).sum(0) / norms[valid]
    return math.degrees(float(np.arccos(np.clip(cos, -1, 1)).mean()))


# --- Q2n -----------------------------------------------------------------------------------------
def _conj(v: np.ndarray) -> np.ndarray:
    return np.concatenate([v[..., :1], -v[..., 1:]], axis=-1)


def _onion_mult(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cayley-Dickson product of hypercomplex numbers with ``2^n`` components on the last axis
    (the recursion of the toolbox's ``onion_mult.m``)."""
    n = a.shape[-1]
    if n == 1:
        return a * b
    h = n // 2
    p, q = a[..., :h], _conj(a[..., h:])
    r, s = b[..., :h], _conj(b[..., h:])
    if n == 2:
        return np.concatenate([p * r - s * q, p * s + r * q], axis=-1)
    return np.concatenate([_onion_mult(p, r) - _onion_mult(s, _conj(q)), _onion_mult(_conj(p), s)
                           + _onion_mult(r, q)], axis=-1)


def _onion_quality(ref: np.ndarray, fus: np.ndarray) -> float:
    """Q2n of one block; ``ref``/``fus`` are ``(S, S, N)`` with ``N`` a power of two."""
    n_pix = ref.shape[0] * ref.shape[1]
    ref = ref.copy()
    fus = _conj(fus)  # the correlation uses the conjugate of the fused number
    for i in range(ref.shape[-1]):
        mu, sd = ref[..., i].mean(), ref[..., i].std(ddof=1)
        sd = sd if sd > 0 else np.finfo(np.float64).eps
        ref[..., i] = (ref[..., i] - mu) / sd + 1
        if i == 0:
            fus[..., i] = (fus[..., i] - mu) / sd + 1
        else:  # the conjugated components are normalised through their sign flip
            fus[..., i] = -((-fus[..., i] - mu) / sd + 1)
    m1, m2 = ref.mean((0, 1)), fus.mean((0, 1))
    mod1m, mod2m = np.sqrt((m1**2).sum()), np.sqrt((m2**2).sum())
    unbias = n_pix / (n_pix - 1)
    int1 = unbias * (ref**2).sum(-1).mean()
    int2 = unbias * (fus**2).sum(-1).mean()
    contrast_den = int1 + int2 - unbias * (mod1m**2 + mod2m**2)
    mean_bias = 2 * mod1m * mod2m / (mod1m**2 + mod2m**2)
    if contrast_den == 0:
        q = np.zeros(ref.shape[-1])
        q[-1] = mean_bias
    else:
        qv = unbias * _onion_mult(ref, fus).mean((0, 1))
        q = (qv - unbias * _onion_mult(m1, m2)) * mean_bias * 2 / contrast_den
    return float(np.sqrt((q**2).sum()))


def q2n(reference: np.ndarray, fused: np.ndarray, block: int = 32, shift: int = 32) -> float:
    """Q2n (Q4 / Q8 ...) averaged over ``block`` x ``block`` blocks stepped by ``shift`` (1 is best)."""
    ref = np.moveaxis(np.asarray(reference, np.float64), 0, -1)
    fus = np.moveaxis(np.asarray(fused, np.float64), 0, -1)
    h, w, c = ref.shape
    if h < block or w < block:
        raise ValueError(f"Q2n needs at least {block}x{block} pixels, got {h}x{w}")
    n = 1 << max(1, math.ceil(math.log2(c)))
    if n > c:  # zero-pad the bands to a power of two, as the toolbox does
        pad = ((0, 0), (0, 0), (0, n - c))
        ref, fus = np.pad(ref, pad), np.pad(fus, pad)
    values = [_onion_quality(ref[i:i + block, j:j + block], fus[i:i + block, j:j + block])
              for i in range(0, h - block + 1, shift) for j in range(0, w - block + 1, shift)]
    return float(np.mean(values))


def scc(reference: np.ndarray, fused: np.ndarray) -> float:
    """Spatial correlation coefficient of Laplacian high-passes, averaged over bands (1 is best)."""
    out = []
    for r, f in zip(np.asarray(reference, np.float64), np.asarray(fused, np.float64), strict=True):
        hr, hf = ndimage.laplace(r, mode="reflect"), ndimage.laplace(f, mode="reflect")
        hr, hf = hr - hr.mean(), hf - hf.mean()
        den = np.sqrt((hr**2).sum() * (hf**2).sum())
        out.append(float((hr * hf).sum() / den) if den > 0 else 0.0)
    return float(np.mean(out))


def qnr(fused: np.ndarray, ms: np.ndarray, pan: np.ndarray, pan_lr: np.ndarray) -> dict[str, float]:
    """Full-resolution ``{"qnr", "d_lambda", "d_s"}`` (torchmetrics; see the module docstring)."""
    from torchmetrics.functional.image import spatial_distortion_index, spectral_distortion_index

    c = fused.shape[0]
    f, m = _t(fused).float(), _t(ms).float()
    p = _t(np.repeat(np.asarray(pan)[None], c, 0)).float()
    pl = _t(np.repeat(np.asarray(pan_lr)[None], c, 0)).float()
    d_l = float(spectral_distortion_index(f, m))
    d_s = float(spatial_distortion_index(f, m, p, pan_lr=pl))
    return {"qnr": (1 - d_l) * (1 - d_s), "d_lambda": d_l, "d_s": d_s}


def pansharpen_reduced(reference: np.ndarray, fused: np.ndarray, ratio: int) -> dict[str, float]:
    """All reduced-resolution metrics: ``q2n``, ``sam``, ``ergas``, ``scc``."""
    return {"q2n": q2n(reference, fused), "sam": sam(reference, fused), "ergas": ergas(reference, fused, ratio),
            "scc": scc(reference, fused)}


# --- cloud removal -------------------------------------------------------------------------------
def region_metrics(reference: np.ndarray, estimate: np.ndarray, mask: np.ndarray, data_range: float
                   ) -> dict[str, float]:
    """PSNR / SSIM / SAM / MAE over the pixels where ``mask`` (``(H, W)`` bool) is true."""
    ref, est = np.asarray(reference, np.float64), np.asarray(estimate, np.float64)
    mask = np.asarray(mask, bool)
    if not mask.any():
        return {"psnr": float("nan"), "ssim": float("nan"), "sam": float("nan"), "mae": float("nan")}
    diff = (ref - est)[:, mask]
    mse = float((diff**2).mean())
    _, smap = structural_similarity(ref, est, data_range=data_range, channel_axis=0, full=True, win_size=7)
    return {"psnr": 10 * math.log10(data_range**2 / mse) if mse > 0 else float("inf"),
            "ssim": float(smap.mean(0)[mask].mean()), "sam": sam(ref, est, mask), "mae": float(np.abs(diff).mean())}


def interval_coverage(reference: np.ndarray, mean: np.ndarray, std: np.ndarray, mask: np.ndarray | None = None,
                      level: float = 0.9) -> float:
    """Fraction of values (all bands, ``mask`` pixels) inside ``mean +- z std`` (``z`` for ``level``)."""
    z = float(norm.ppf(0.5 + level / 2))
    inside = np.abs(np.asarray(reference) - np.asarray(mean)) <= z * np.asarray(std)
    if mask is not None:
        inside = inside[:, np.asarray(mask, bool)]
    return float(inside.mean())


def cloud_metrics(reference: np.ndarray, estimate: np.ndarray, mask: np.ndarray,
                  data_range: float | None = None) -> dict[str, Any]:
    """``psnr_inside``, ``ssim_inside``, ..., ``mae_outside`` (data range: max of the reference)."""
    data_range = float(np.max(reference)) if data_range is None else float(data_range)
    out: dict[str, Any] = {}
    for name, region in (("inside", np.asarray(mask, bool)), ("outside", ~np.asarray(mask, bool))):
        for key, value in region_metrics(reference, estimate, region, data_range).items():
            out[f"{key}_{name}"] = value
    return out
