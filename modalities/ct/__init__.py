"""CT physics: parallel-beam geometry, Radon transform with exact adjoint, FBP, Poisson noise, baselines.

Conventions (skimage-compatible geometry, HU window, units) are in :mod:`.geometry` and
:mod:`.units`.
"""

from .baselines import DEFAULT_TV_LAMBDA, fbp_recon, sart_recon, tv_recon
from .fbp import backproject, fbp, filter_sinogram, fourier_filter
from .geometry import ParallelBeamGeometry, default_n_det
from .noise import poisson_sinogram, transmission_counts
from .radon import ParallelBeamProjector
from .units import HU_WINDOW, MU_WATER_PER_MM, hu_to_mu, mu_to_hu, unwindow, window

__all__ = [
    "DEFAULT_TV_LAMBDA",
    "HU_WINDOW",
    "MU_WATER_PER_MM",
    "ParallelBeamGeometry",
    "ParallelBeamProjector",
    "backproject",
    "default_n_det",
    "fbp",
    "fbp_recon",
    "filter_sinogram",
    "fourier_filter",
    "hu_to_mu",
    "mu_to_hu",
    "poisson_sinogram",
    "sart_recon",
    "transmission_counts",
    "tv_recon",
    "unwindow",
    "window",
]
