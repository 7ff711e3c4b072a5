"""The reconstruction grid: the prior's training pixel spacing, and resampling to it and back.

A prior learns anatomy at the pixel size it was trained at (the card's ``data.pixel_spacing_mm``,
issue 15): a head CT prior trained at 0.96 mm sees a 0.58 mm scan as a head 1.7x too large.
When an input's in-plane pixel is coarser than the prior's by more than :data:`TOLERANCE`, the
diffusion solvers reconstruct on a grid of the prior's pixel size over the *same field of view*
(``n' = round(n p / p_prior)`` pixels of ``n p / n'`` mm) and the result is mapped back to the
input's grid. A finer input keeps its own grid by default (:func:`reconstruction_grid`): measured,
the coarse grid lost 1.4 dB on a 0.43 mm head CT. The physics is kept exact on the new grid, not
approximated by resampling the data:

* **MRI** (k-space): a finer or coarser pixel over the same FOV is a larger or smaller k-space
  matrix at the same ``1 / FOV`` spacing. The measured k-space is zero-padded (the new outer
  frequencies are *unmeasured*: mask 0) or cropped (the outer measured lines are set aside)
  and scaled by ``sqrt(n'^2 / n^2)`` (the orthonormal centred FFT of the same object on the new
  grid); the reconstruction is mapped back by the inverse crop/pad of its k-space, and lines
  set aside by a crop are put back unchanged, so nothing measured is lost
  (:func:`centre_crop_pad`, :func:`fourier_resample`).
* **CT** (sinogram): the projector of the new grid is built at the new pixel size (per-pixel
  attenuation ``mu p'``) with the detector bins at the *measured* positions (``det_spacing``
  scaled by ``p / p'``, same bins and angles), so it predicts the measured sinogram itself;
  the HU result is interpolated back (cubic spline, :func:`resample_centred`).

Both grids share the rotation / FFT centre pixel ``n // 2``, so the maps are exact inverses on
band-limited images. Hand-written: the k-space crop/pad is a few index lines, and the centred
spline map is ``scipy.ndimage.map_coordinates`` with the anti-aliasing sigma of
``skimage.transform.resize``; neither library resizes about a centre pixel other than the FOV's.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

Tensor = torch.Tensor

__all__ = ["TOLERANCE", "centre_crop_pad", "fourier_resample", "geometry_pixel_mm", "kept_band", "plan_grid",
           "prior_pixel_spacing", "reconstruction_grid", "resample_centred"]

#: relative pixel-size difference above which the solvers reconstruct on the prior's grid
TOLERANCE = 0.15


def prior_pixel_spacing(card: dict[str, Any]) -> tuple[tuple[float, float] | None, str]:
    """The prior's training in-plane pixel spacing ``(dy, dx)`` in mm and where it came from.

    The card's ``data.pixel_spacing_mm`` (written by training since issue 15); for older cards
    the first training source's spacing, read here from its store or file; else ``None``.
    """
    data = card.get("data", {})
    px = data.get("pixel_spacing_mm")
    if px:
        values = [float(v) for v in px]
        return (values[0], values[-1]), "model card data.pixel_spacing_mm"
    from scorerecon.pipelines.holdout import open_training_source

    volume = open_training_source(data, 0) if data.get("sources") else None
    spacing = getattr(volume, "spacing", None)
    axis = data.get("slice_axis", "z")
    plane = [d for d in ("z", "y", "x") if d != axis]
    if spacing and all(d in spacing for d in plane):
        return (float(spacing[plane[0]]), float(spacing[plane[1]])), "the first training source's affine"
    return None, "unknown (no data.pixel_spacing_mm in the card and the training source is not readable here)"


def reconstruction_grid(shape: tuple[int, int], pixel_mm: tuple[float, float] | None,
                        prior_mm: tuple[float, float] | None, tolerance: float = TOLERANCE,
                        coarsen: bool = False) -> dict[str, Any]:
    """The grid the solvers run on: the input's, or the prior's pixel size over the same FOV.

    Only towards a *finer* grid by default: an input whose pixels are coarser than the prior's
    by more than ``tolerance`` is reconstructed on the prior's pixel size (more pixels over the
    same FOV); a finer input keeps its grid unless ``coarsen`` (on the 0.43 mm head CT of the
    unseen benchmark, 23 views, the prior's 0.96 mm grid gave 27.82 dB and the input's 29.23 dB:
    the coarse grid cannot hold what the measurement resolves).

    Returns ``{"resampled": bool, "shape", "pixel_mm", "input_shape", "input_pixel_mm",
    "prior_pixel_mm", "note"}``.
    """
    h, w = (int(n) for n in shape)
    record: dict[str, Any] = {"resampled": False, "shape": [h, w], "input_shape": [h, w],
                              "input_pixel_mm": None if pixel_mm is None else [float(v) for v in pixel_mm],
                              "prior_pixel_mm": None if prior_mm is None else [float(v) for v in prior_mm]}
    if pixel_mm is None or prior_mm is None:
        record["pixel_mm"] = record["input_pixel_mm"]
        record["note"] = "not resampled: the " + ("input's" if pixel_mm is None else "prior's") + \
            " pixel spacing is unknown"
        return record
    ratios = [float(p) / float(q) for p, q in zip(pixel_mm, prior_mm, strict=True)]
    if any(r < 1.0 - tolerance for r in ratios) and not coarsen:
        record["pixel_mm"] = record["input_pixel_mm"]
        record["note"] = (f"not resampled: the input's pixels are finer than the prior's (ratio "
                          f"{'/'.join(f'{r:.3f}' for r in ratios)}); a coarser grid would discard resolution the "
                          "data hold (measured: benchmarks/spacing.py)")
        return record
    if all(abs(r - 1.0) <= tolerance for r in ratios):
        record["pixel_mm"] = record["input_pixel_mm"]
        record["note"] = f"not resampled: input/prior pixel ratio {'/'.join(f'{r:.3f}' for r in ratios)} " \
                         f"within {tolerance:.0%}"
        return record
    new = [max(8, int(round(n * r))) for n, r in zip((h, w), ratios, strict=True)]
    record.update(resampled=True, shape=new, pixel_mm=[n * float(p) / m for n, p, m in zip((h, w), pixel_mm, new,
                                                                                             strict=True)],
                  note=f"input/prior pixel ratio {'/'.join(f'{r:.3f}' for r in ratios)} beyond {tolerance:.0%}: "
                       f"reconstructed on {new[0]}x{new[1]} pixels over the input's field of view")
    return record


def _resize_axis(x: Tensor, m: int, dim: int, nyquist: bool) -> Tensor:
    """Crop or zero-pad one axis of a centred spectrum to ``m``, index ``n // 2`` staying on ``m // 2``.

    ``nyquist``: an even axis's unpaired Nyquist line ``-n/2`` is split in halves onto ``-n/2`` and
    ``+n/2`` when padding and the two lines are folded back onto ``-m/2`` when cropping to an even
    ``m`` (scipy.signal.resample's rule), so real images stay real and pad/crop are inverses.
    """
    n = x.shape[dim]
    x = x.movedim(dim, 0)
    if m > n:
        lo = m // 2 - n // 2
        out = torch.zeros((m, *x.shape[1:]), dtype=x.dtype, device=x.device)
        out[lo:lo + n] = x
        if nyquist and n % 2 == 0:
            out[lo] = out[lo + n] = 0.5 * x[0]
    else:
        lo = n // 2 - m // 2
        out = x[lo:lo + m].clone()
        if nyquist and m % 2 == 0 and m < n:
            out[0] = x[lo] + x[lo + m]
    return out.movedim(0, dim)


def centre_crop_pad(x: Tensor, shape: tuple[int, int], nyquist: bool = False) -> Tensor:
    """Crop or zero-pad the last two dims to ``shape`` keeping index ``n // 2`` (the centred DC) on ``m // 2``
    (with ``nyquist``, the even-grid Nyquist rule of :func:`_resize_axis`)."""
    out = _resize_axis(x, int(shape[0]), x.ndim - 2, nyquist)
    return _resize_axis(out, int(shape[1]), x.ndim - 1, nyquist)


def fourier_resample(images: Tensor, shape: tuple[int, int]) -> Tensor:
    """Band-limited resampling of complex images over the same FOV (k-space crop / zero-pad), intensity kept."""
    from scorerecon.modalities.mri.operators import fft2c, ifft2c

    h, w = images.shape[-2:]
    if (h, w) == tuple(shape):
        return images
    scale = math.sqrt(float(shape[0] * shape[1]) / float(h * w))
    return ifft2c(centre_crop_pad(fft2c(images.to(torch.complex64)), shape, nyquist=True)) * scale


def kept_band(shape: tuple[int, int], grid: tuple[int, int]) -> Tensor:
    """``(H, W)`` indicator of the input k-space lines a ``grid`` matrix represents on its own.

    All lines for a pad; for a crop the central ``m`` lines less the new grid's unpaired Nyquist
    line ``-m/2`` (even ``m``), which a real image on that grid cannot hold alone.
    """
    masks = []
    for n, m in zip(shape, grid, strict=True):
        keep = torch.ones(n)
        if m < n:
            keep.zero_()
            lo = n // 2 - m // 2
            keep[lo + (1 if m % 2 == 0 else 0):lo + m] = 1.0
        masks.append(keep)
    return torch.outer(masks[0], masks[1])


def resample_centred(images: Tensor, shape: tuple[int, int], src_mm: tuple[float, float],
                     dst_mm: tuple[float, float]) -> Tensor:
    """Real images ``(..., H, W)`` -> ``(..., h, w)`` by cubic splines, pixel ``n // 2`` on pixel ``m // 2``.

    Pixel ``i`` of the output lies at ``(i - m // 2) dst`` mm from the centre, read from input
    index ``(i - m // 2) dst / src + n // 2``; when the output is coarser the input is first
    smoothed with skimage's anti-aliasing sigma ``(dst / src - 1) / 2`` pixels.
    """
    from scipy import ndimage

    arr = images.detach().cpu().numpy().astype(np.float64)
    lead, (n_h, n_w) = arr.shape[:-2], arr.shape[-2:]
    flat = arr.reshape(-1, n_h, n_w)
    m_h, m_w = int(shape[0]), int(shape[1])
    scale = [float(d) / float(s) for d, s in zip(dst_mm, src_mm, strict=True)]
    rows = (np.arange(m_h) - m_h // 2) * scale[0] + n_h // 2
    cols = (np.arange(m_w) - m_w // 2) * scale[1] + n_w // 2
    coords = np.stack(np.meshgrid(rows, cols, indexing="ij"))
    sigma = [max(0.0, (s - 1.0) / 2.0) for s in scale]
    out = np.empty((flat.shape[0], m_h, m_w))
    for k, img in enumerate(flat):
        if any(s > 0 for s in sigma):
            img = ndimage.gaussian_filter(img, sigma, mode="nearest")
        out[k] = ndimage.map_coordinates(img, coords, order=3, mode="nearest")
    return torch.from_numpy(out.reshape(*lead, m_h, m_w)).to(device=images.device, dtype=images.dtype)


def plan_grid(card: dict[str, Any], shape: tuple[int, int], pixel_mm: tuple[float, float] | None,
              resample: bool | str = True) -> dict[str, Any]:
    """:func:`reconstruction_grid` against the prior's spacing (:func:`prior_pixel_spacing`), recorded.

    ``resample``: ``True`` (the rule: towards a finer grid only), ``False`` (never) or
    ``"always"`` (also towards a coarser grid; for measuring the rule, benchmarks/spacing.py).
    """
    prior_mm, source = prior_pixel_spacing(card)
    grid = reconstruction_grid(shape, pixel_mm, prior_mm if resample else None, coarsen=resample == "always")
    grid["prior_pixel_from"] = source
    if not resample:
        grid["note"] = "not resampled: switched off (--no-resample)"
    return grid


def geometry_pixel_mm(attrs: dict[str, Any]) -> tuple[float, float] | None:
    """In-plane ``(dy, dx)`` mm of an output geometry's ``affine`` (``(z, y, x)`` grid), or ``None``
    where the size is a documented default rather than a fact of the input."""
    affine = attrs.get("affine")
    note = str(attrs.get("affine_source", ""))
    if affine is None or "default" in note or "where the header gives no size" in note:
        return None
    a = np.asarray(affine, dtype=np.float64)
    if a.shape != (4, 4) or not np.all(np.isfinite(a)):
        return None
    dx, dy = (float(np.linalg.norm(a[:3, k])) for k in (0, 1))
    return (dy, dx) if dx > 0 and dy > 0 else None
