"""Classical restoration baselines for RGB images in ``[0, 1]`` (numpy ``(H, W, 3)``), all from libraries.

======================= =========================================================================
task                    baselines (library)
======================= =========================================================================
super-resolution        ``bicubic`` (the same Pillow-kernel resampler as the degradation)
deblurring              ``wiener`` (``skimage.restoration.wiener``, balance tuned),
                        ``unsupervised_wiener`` (``skimage.restoration.unsupervised_wiener``,
                        parameter-free), ``tv_deconv`` (TV-regularised deconvolution by ADMM:
                        the circular data term solved exactly in Fourier, the TV proximal step
                        by ``skimage.restoration.denoise_tv_chambolle``; Afonso, Bioucas-Dias &
                        Figueiredo, IEEE TIP 2010, SALSA -- no library ships TV deconvolution
                        for a circular blur, so the 10-line splitting is written here; weight
                        tuned). Richardson-Lucy (skimage) was tried and dropped: its
                        zero-padded convolution does not match the circular blur and it peaked
                        at 2 iterations (24.2 dB vs Wiener 28.4 dB on the tuning crops).
denoising               ``nlm`` (``skimage.restoration.denoise_nl_means`` with the true sigma,
                        ``h`` tuned), ``tv`` (``denoise_tv_chambolle``, weight tuned), ``bm3d``
                        (the ``bm3d`` PyPI package, Makinen, Azzari & Foi 2020, true sigma)
inpainting              ``biharmonic`` (``skimage.restoration.inpaint_biharmonic``)
low light               ``gamma`` (gain then gamma curve, both tuned), ``clahe``
                        (``skimage.exposure.equalize_adapthist``, clip limit tuned, after the
                        tuned gain)
======================= =========================================================================

Tuned parameters (:data:`TUNED`) were chosen by :func:`tune` (a grid search, PSNR) on crops of
the prior's TRAINING images (kodim02, kodim07, kodim15; ``benchmarks/natural.py --tune`` re-runs
it), never on the held-out evaluation images.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from skimage import exposure, restoration
from skimage.metrics import peak_signal_noise_ratio

from scorerecon.modalities.natural.degradations import Blur, bicubic_resize

__all__ = ["BASELINES", "TUNED", "run_baseline", "tune"]

#: Values picked by :func:`tune` on training crops (see the module docstring); grids in ``GRIDS``.
TUNED: dict[str, dict[str, float]] = {
    "wiener": {"balance": 0.001},  # 28.42 dB on the tuning crops (gaussian blur, sigma 1)
    "tv_deconv": {"weight": 0.002},  # 29.15 dB
    "nlm": {"h_factor": 0.6},  # 29.03 dB (sigma 25)
    "tv": {"weight": 0.08},  # 28.27 dB (sigma 25)
    "gamma": {"gain": 12.0, "gamma": 1.65},  # 15.20 dB, low light
    "clahe": {"clip_limit": 0.005},  # low light, after the tuned gain (<= 0.005 all tie at 13.30 dB)
}
GRIDS: dict[str, dict[str, list[float]]] = {
    "wiener": {"balance": [1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2]},
    "tv_deconv": {"weight": [0.0005, 0.001, 0.002, 0.003, 0.006]},
    "nlm": {"h_factor": [0.4, 0.6, 0.8, 1.0, 1.2]},
    "tv": {"weight": [0.04, 0.06, 0.08, 0.1, 0.15]},
    "gamma": {"gain": [6.0, 9.0, 12.0, 17.0, 24.0], "gamma": [1.2, 1.35, 1.5, 1.65, 1.8, 2.0]},
    "clahe": {"clip_limit": [0.001, 0.0025, 0.005, 0.01, 0.02]},
}

#: task -> baseline names
BASELINES: dict[str, tuple[str, ...]] = {
    "sr": ("bicubic",),
    "deblur": ("wiener", "unsupervised_wiener", "tv_deconv"),
    "denoise": ("nlm", "tv", "bm3d"),
    "inpaint": ("biharmonic",),
    "lowlight": ("gamma", "clahe"),
}


def _per_channel(fn: Callable[[np.ndarray], np.ndarray], img: np.ndarray) -> np.ndarray:
    return np.stack([fn(img[..., c]) for c in range(img.shape[-1])], axis=-1)


def _bicubic(y: np.ndarray, ctx: dict[str, Any], **_: Any) -> np.ndarray:
    import torch

    hr = ctx["shape"]
    up = bicubic_resize(torch.from_numpy(np.moveaxis(y, -1, 0).astype(np.float64)), hr).numpy()
    return np.moveaxis(up, 0, -1)


def _centred_psf(op: Blur) -> np.ndarray:
    return op.kernel


def _wiener(y: np.ndarray, ctx: dict[str, Any], balance: float) -> np.ndarray:
    psf = _centred_psf(ctx["operator"])
    return _per_channel(lambda c: restoration.wiener(c, psf, balance, clip=False), y)


def _unsupervised_wiener(y: np.ndarray, ctx: dict[str, Any], **_: Any) -> np.ndarray:
    psf = _centred_psf(ctx["operator"])
    rng = np.random.default_rng(ctx.get("seed", 0))
    return _per_channel(lambda c: restoration.unsupervised_wiener(c, psf, clip=False, rng=rng)[0], y)


def _tv_deconv(y: np.ndarray, ctx: dict[str, Any], weight: float, rho: float = 0.05,
               n_iter: int = 40) -> np.ndarray:
    """``argmin 1/2 ||k * x - y||^2 + TV(x)`` by ADMM with the split ``z = x``.

    x-step: ``(K^H K + rho) x = K^H y + rho (z - u)`` in Fourier (circular ``k``); z-step: TV
    prox with skimage's Chambolle (weight ``weight``, in skimage's units); u: the scaled dual.
    """
    otf = ctx["operator"].otf.numpy()[..., None]
    fy = np.fft.fft2(y, axes=(0, 1))
    num_y, den = np.conj(otf) * fy, np.abs(otf) ** 2 + rho
    z, u = y.copy(), np.zeros_like(y)
    for _ in range(n_iter):
        x = np.fft.ifft2((num_y + rho * np.fft.fft2(z - u, axes=(0, 1))) / den, axes=(0, 1)).real
        z = restoration.denoise_tv_chambolle(x + u, weight=weight, channel_axis=-1)
        u = u + x - z
    return z


def _nlm(y: np.ndarray, ctx: dict[str, Any], h_factor: float) -> np.ndarray:
    s = ctx["sigma"] / 255.0
    return restoration.denoise_nl_means(y, h=h_factor * s, sigma=s, patch_size=5, patch_distance=6,
                                        fast_mode=True, channel_axis=-1)


def _tv(y: np.ndarray, ctx: dict[str, Any], weight: float) -> np.ndarray:
    return restoration.denoise_tv_chambolle(y, weight=weight, channel_axis=-1)


def _bm3d(y: np.ndarray, ctx: dict[str, Any], **_: Any) -> np.ndarray:
    import bm3d

    return np.asarray(bm3d.bm3d_rgb(y, ctx["sigma"] / 255.0), dtype=np.float64)


def _biharmonic(y: np.ndarray, ctx: dict[str, Any], **_: Any) -> np.ndarray:
    missing = ctx["mask"] < 0.5
    return restoration.inpaint_biharmonic(y, missing, channel_axis=-1)


def _gamma(y: np.ndarray, ctx: dict[str, Any], gain: float, gamma: float) -> np.ndarray:
    return np.clip(gain * np.clip(y, 0, None), 0.0, 1.0) ** (1.0 / gamma)


def _clahe(y: np.ndarray, ctx: dict[str, Any], clip_limit: float) -> np.ndarray:
    bright = np.clip(TUNED["gamma"]["gain"] * np.clip(y, 0, None), 0.0, 1.0)
    return exposure.equalize_adapthist(bright, clip_limit=clip_limit)


_FUNCS: dict[str, Callable[..., np.ndarray]] = {
    "bicubic": _bicubic, "wiener": _wiener, "unsupervised_wiener": _unsupervised_wiener, "tv_deconv": _tv_deconv,
    "nlm": _nlm, "tv": _tv, "bm3d": _bm3d, "biharmonic": _biharmonic, "gamma": _gamma, "clahe": _clahe,
}


def run_baseline(name: str, y: np.ndarray, ctx: dict[str, Any], **params: float) -> np.ndarray:
    """Baseline ``name`` on the degraded ``(h, w, 3)`` image ``y``; returns ``(H, W, 3)``, not clipped.

    ``ctx`` carries what the degradation knows: ``shape`` (SR output size), ``operator`` (the
    :class:`~.degradations.Blur`), ``sigma`` (noise, 0..255 scale), ``mask`` (inpainting, 1 =
    observed), ``seed``. ``params`` override :data:`TUNED`.
    """
    if name not in _FUNCS:
        raise ValueError(f"unknown baseline {name!r}; expected one of {sorted(_FUNCS)}")
    return _FUNCS[name](np.asarray(y, dtype=np.float64), ctx, **{**TUNED.get(name, {}), **params})


def tune(name: str, pairs: Sequence[tuple[np.ndarray, np.ndarray, dict[str, Any]]]) -> tuple[dict[str, float],
                                                                                             list[dict[str, Any]]]:
    """Grid search of ``GRIDS[name]`` maximising the mean PSNR over ``(clean, degraded, ctx)`` pairs.

    Returns the best parameters and every grid point's mean PSNR. Use TRAINING images only.
    """
    grid = GRIDS[name]
    keys = list(grid)
    points = np.array(np.meshgrid(*[grid[k] for k in keys], indexing="ij")).reshape(len(keys), -1).T
    rows = []
    for point in points:
        params = dict(zip(keys, (float(v) for v in point), strict=True))
        scores = [peak_signal_noise_ratio(clean, np.clip(run_baseline(name, y, ctx, **params), 0, 1), data_range=1.0)
                  for clean, y, ctx in pairs]
        rows.append({**params, "psnr": float(np.mean(scores))})
    best = max(rows, key=lambda r: r["psnr"])
    return {k: best[k] for k in keys}, rows
