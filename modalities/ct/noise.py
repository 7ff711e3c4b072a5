"""Low-dose CT noise: monochromatic Poisson transmission model (+ optional electronic noise), seeded.

For a noise-free line integral ``p = A mu`` and ``I0`` incident photons per detector bin::

    N ~ Poisson(I0 exp(-p))  (+ N(0, sigma_e^2) electronic noise)
    y = -log(max(N, n_min) / I0)

``n_min`` (default 1 photon) handles zero / negative counts (photon starvation): without it the
log diverges; clamping to one photon is the usual choice in low-dose simulation studies (e.g.
Yu et al., "Development and validation of a practical lower-dose-simulation tool", Med. Phys.
2012, use the same Poisson + Gaussian model). ``p`` must be in physical units (per-pixel
attenuation, :func:`~.units.hu_to_mu`), otherwise ``I0`` has no meaning. Typical ``I0``: 1e5-1e6
normal dose, 1e4 and below low dose.

Randomness comes only from the ``torch.Generator`` built from ``seed`` (on the input's device), so
the same seed on the same device gives the same noisy sinogram.
"""

from __future__ import annotations

import torch

Tensor = torch.Tensor

__all__ = ["poisson_sinogram", "transmission_counts"]


def _generator(seed: int | torch.Generator, device: torch.device) -> torch.Generator:
    if isinstance(seed, torch.Generator):
        return seed
    return torch.Generator(device=device).manual_seed(int(seed))


def transmission_counts(line_integrals: Tensor, incident_photons: float, seed: int | torch.Generator = 0,
                        electronic_std: float = 0.0) -> Tensor:
    """Detected counts ``Poisson(I0 exp(-p)) + N(0, electronic_std^2)`` (float, same shape as ``p``)."""
    gen = _generator(seed, line_integrals.device)
    expected = float(incident_photons) * torch.exp(-line_integrals.clamp_min(0.0))
    counts = torch.poisson(expected, generator=gen)
    if electronic_std > 0:
        counts = counts + electronic_std * torch.randn(counts.shape, generator=gen, device=counts.device,
                                                       dtype=counts.dtype)
    return counts


def poisson_sinogram(line_integrals: Tensor, incident_photons: float, seed: int | torch.Generator = 0,
                     electronic_std: float = 0.0, min_counts: float = 1.0) -> Tensor:
    """Noisy line integrals ``-log(max(N, min_counts) / I0)`` for the counts of :func:`transmission_counts`."""
    counts = transmission_counts(line_integrals, incident_photons, seed, electronic_std)
    return -torch.log(counts.clamp_min(min_counts) / float(incident_photons))
