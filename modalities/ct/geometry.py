"""2-D parallel-beam CT geometry: angles, detector, and the coordinate convention.

Convention (identical to scikit-image's ``radon``/``iradon``/``iradon_sart``, so sinograms and
images pass between the two without flips or shifts):

* the image is square ``N x N``, indexed ``[row, col]``; the rotation centre is the pixel
  ``(N // 2, N // 2)``; pixel size is the unit of length (multiply attenuation per mm by the
  pixel size in mm to get per-pixel values, see :mod:`.units`);
* a view at angle ``theta`` (degrees in the geometry, radians internally) integrates along the
  line ``s = (col - N//2) cos(theta) - (row - N//2) sin(theta)``; ``theta = 0`` integrates down the
  columns (sums over rows);
* detector bin ``j`` sits at ``s_j = (j - n_det // 2) * det_spacing``; the default
  ``n_det = ceil(sqrt(2) N)`` covers the whole square (skimage's ``circle=True`` covers only the
  inscribed disc with ``N`` bins: those are our central ``N`` bins);
* sinograms are ``(B, 1, n_angles, n_det)`` (skimage's are ``(n_det, n_angles)``: transpose).

Named constructors follow docs/conventions.md section 3: :meth:`ParallelBeamGeometry.full` and
:meth:`ParallelBeamGeometry.sparse_view` use views uniform over ``[0, 180)`` degrees;
:meth:`ParallelBeamGeometry.limited_angle` a contiguous arc (default 120 degrees, 1 view per
degree).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

__all__ = ["ParallelBeamGeometry", "default_n_det"]


def default_n_det(image_size: int) -> int:
    """``ceil(sqrt(2) * N)``: enough unit bins to see every pixel of an ``N x N`` image at every angle."""
    return int(math.ceil(math.sqrt(2.0) * image_size))


@dataclass(frozen=True)
class ParallelBeamGeometry:
    """Angles (degrees), image size ``N`` and a flat detector of ``n_det`` bins of ``det_spacing`` pixels.

    ``angular_step_deg`` is the angular integration weight used by FBP (the spacing of uniformly
    spaced views); :meth:`full`, :meth:`sparse_view` and :meth:`limited_angle` set it; for a
    hand-made angle list it defaults to the mean spacing of the sorted angles (180/n for one).
    """

    image_size: int
    angles_deg: tuple[float, ...]
    n_det: int | None = None
    det_spacing: float = 1.0
    angular_step_deg: float | None = None
    name: str = field(default="custom", compare=False)

    def __post_init__(self) -> None:
        if self.image_size < 2:
            raise ValueError("image_size must be >= 2")
        if len(self.angles_deg) == 0:
            raise ValueError("need at least one angle")
        object.__setattr__(self, "angles_deg", tuple(float(a) for a in self.angles_deg))
        if self.n_det is None:
            object.__setattr__(self, "n_det", default_n_det(self.image_size))
        if self.angular_step_deg is None:
            a = sorted(self.angles_deg)
            step = (a[-1] - a[0]) / (len(a) - 1) if len(a) > 1 else 180.0
            object.__setattr__(self, "angular_step_deg", float(step))

    # --- constructors -----------------------------------------------------------------------
    @classmethod
    def full(cls, image_size: int, n_angles: int = 180, n_det: int | None = None) -> ParallelBeamGeometry:
        """``n_angles`` views uniform over ``[0, 180)`` degrees (default 180: one per degree)."""
        return cls.sparse_view(image_size, n_angles, n_det, name="full")

    @classmethod
    def sparse_view(cls, image_size: int, n_views: int, n_det: int | None = None,
                    name: str = "sparse_view") -> ParallelBeamGeometry:
        """``n_views`` views uniform over ``[0, 180)`` degrees: ``180 k / n_views``."""
        angles = tuple(180.0 * k / n_views for k in range(int(n_views)))
        return cls(int(image_size), angles, n_det, angular_step_deg=180.0 / n_views, name=name)

    @classmethod
    def limited_angle(cls, image_size: int, arc_deg: float = 120.0, n_angles: int | None = None,
                      start_deg: float = 0.0, n_det: int | None = None) -> ParallelBeamGeometry:
        """A contiguous arc ``[start, start + arc)`` with ``n_angles`` uniform views (default 1/degree)."""
        n = int(round(arc_deg)) if n_angles is None else int(n_angles)
        angles = tuple(start_deg + arc_deg * k / n for k in range(n))
        return cls(int(image_size), angles, n_det, angular_step_deg=arc_deg / n, name="limited_angle")

    # --- derived ----------------------------------------------------------------------------
    @property
    def n_angles(self) -> int:
        return len(self.angles_deg)

    @property
    def sinogram_shape(self) -> tuple[int, int]:
        return (self.n_angles, int(self.n_det))

    def angles_rad(self, device: torch.device | str | None = None, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        return torch.deg2rad(torch.tensor(self.angles_deg, dtype=torch.float64)).to(device=device, dtype=dtype)

    def detector_positions(self, device: torch.device | str | None = None,
                           dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """``s_j = (j - n_det // 2) * det_spacing`` in pixel units."""
        j = torch.arange(int(self.n_det), dtype=torch.float64)
        return ((j - int(self.n_det) // 2) * self.det_spacing).to(device=device, dtype=dtype)

    def config(self) -> dict:
        """JSON-able description (for provenance and result tables)."""
        return {"name": self.name, "image_size": self.image_size, "n_angles": self.n_angles,
                "angles_deg": [self.angles_deg[0], self.angles_deg[-1]], "n_det": self.n_det,
                "det_spacing": self.det_spacing, "angular_step_deg": self.angular_step_deg}
