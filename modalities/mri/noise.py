"""The thermal noise level of measured k-space, from its outermost samples.

Receiver noise is white and complex Gaussian with the same standard deviation at every k-space
location, while an object's signal falls off steeply with spatial frequency: the measured samples
in the k-space corners (beyond ``radius`` of the normalised k-space radius, where no line of a
Cartesian scan is missing its corner) are noise to a good approximation. The estimate is the
median absolute deviation of their real and imaginary parts (x 1.4826, a Gaussian's std), robust
to the few bright outliers a corner can still hold (a spike, residual signal of a sharp edge).

Written here because the libraries at hand estimate noise on *images* (scikit-image's
``estimate_sigma``: wavelet MAD, Donoho & Johnstone 1994), which undersampling aliases, and
sigpy / BART estimate it from separate noise pre-scans that most stored data lack.
Noise-free simulated k-space (an image's FFT) gives a value orders of magnitude below any real
scan's: only the spectral tail of the object.
"""

from __future__ import annotations

import torch

Tensor = torch.Tensor

__all__ = ["kspace_noise_std"]

#: a Gaussian's std per unit of median absolute deviation
MAD_TO_STD = 1.4826


def kspace_noise_std(kspace: Tensor, mask: Tensor | None = None, radius: float = 1.2) -> float:
    """Per-component (real or imaginary) noise std of ``kspace`` ``(..., ky, kx)`` (complex), same units.

    ``mask`` ``(ky, kx)`` (or broadcastable): the measured samples (zeros elsewhere are not data);
    ``radius``: the normalised k-space radius (1 = the edge midpoints, sqrt 2 = the corners) beyond
    which samples count as noise. Returns 0 when no measured sample lies there.
    """
    kspace = torch.as_tensor(kspace)
    h, w = kspace.shape[-2:]
    ky = torch.linspace(-1.0, 1.0, h).reshape(h, 1)
    kx = torch.linspace(-1.0, 1.0, w).reshape(1, w)
    corner = (ky.square() + kx.square()).sqrt() > radius
    if mask is not None:
        measured = torch.as_tensor(mask).reshape(-1, h, w).amax(0) > 0
        corner = corner & measured
    if not bool(corner.any()):
        return 0.0
    values = kspace[..., corner]
    parts = torch.cat([values.real.flatten(), values.imag.flatten()]).double()
    return float(MAD_TO_STD * (parts - parts.median()).abs().median())
