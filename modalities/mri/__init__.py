"""MRI physics: FFT convention, Cartesian masks, single/multi-coil SENSE operators, coil maps, baselines.

See :mod:`.operators` for the one FFT convention (centred, ``norm="ortho"``, as sigpy and
fastMRI) and the real-channel layout used at the guidance/network interface.
"""

from .baselines import DEFAULT_LAMBDA, default_lambda, l1_wavelet_recon, tv_recon, zero_filled
from .coils import (
    MulticoilSimulation,
    birdcage_sensitivities,
    espirit_maps,
    normalize_maps,
    sens_combine,
    simulate_multicoil_kspace,
    smooth_phase,
)
from .masks import (
    acceleration_of,
    default_center_fraction,
    equispaced_1d_mask,
    make_mask,
    poisson_disc_mask,
    random_1d_mask,
)
from .operators import CartesianMRI, MulticoilMRI, channels_to_complex, complex_to_channels, fft2c, ifft2c, rss

__all__ = [
    "DEFAULT_LAMBDA",
    "CartesianMRI",
    "MulticoilMRI",
    "MulticoilSimulation",
    "acceleration_of",
    "birdcage_sensitivities",
    "channels_to_complex",
    "complex_to_channels",
    "default_center_fraction",
    "default_lambda",
    "equispaced_1d_mask",
    "espirit_maps",
    "fft2c",
    "ifft2c",
    "l1_wavelet_recon",
    "make_mask",
    "normalize_maps",
    "poisson_disc_mask",
    "random_1d_mask",
    "rss",
    "sens_combine",
    "simulate_multicoil_kspace",
    "smooth_phase",
    "tv_recon",
    "zero_filled",
]
