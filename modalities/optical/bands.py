"""Band specifications of Landsat-8 OLI/TIRS and Sentinel-2 MSI, and pan synthesis from them.

What each :class:`Band` records and where it comes from:

* ``range_nm``: the band's full-width-half-maximum interval (USGS "Landsat 8 Data Users
  Handbook" v5 table 1-1; ESA "Sentinel-2 User Handbook" table 1, S2A values), and ``centre_nm``;
* ``resolution_m``: the ground sampling distance of the delivered product;
* ``mtf_nyquist``: the modulation transfer function gain at the Nyquist frequency of the band's
  own grid, which sets the Gaussian of Wald's-protocol degradation
  (:mod:`scorerecon.modalities.optical.degradation`). No agency publishes a single number per
  band; we use the generic values of Vivone et al.'s pan-sharpening toolbox for a sensor without
  its own entry (0.29 for multispectral bands, 0.15 for a panchromatic band; Vivone et al.,
  IEEE TGRS 2015, "A critical comparison among pansharpening algorithms"), which lie within the
  0.2-0.35 range of the OLI and MSI pre-launch measurements (Knight & Kvaran, Remote Sens. 2014;
  ESA S2 MSI data-quality reports). They are design constants of the degradation, stated here
  once, not fitted to the data.

Pan synthesis (:func:`pan_weights`): where a product has no panchromatic band, a pan image is the
weighted sum of the multispectral bands with weights proportional to the spectral overlap of each
band's FWHM interval with the Landsat-8 OLI pan band (500-680 nm), normalised to sum to one. It
is a stated, physically motivated choice (a flat-response pan sensor), not a calibrated SRF.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Band", "LANDSAT8", "SENTINEL2", "SENSORS", "PAN_RANGE_NM", "band_specs", "pan_weights", "sensor_of"]

#: the Landsat-8 OLI panchromatic band (B8) FWHM interval, nm
PAN_RANGE_NM: tuple[float, float] = (500.0, 680.0)
MTF_MS = 0.29
MTF_PAN = 0.15


@dataclass(frozen=True)
class Band:
    """One spectral band of one sensor."""

    name: str
    description: str
    range_nm: tuple[float, float]
    resolution_m: float
    mtf_nyquist: float = MTF_MS
    pan: bool = False

    @property
    def centre_nm(self) -> float:
        return 0.5 * (self.range_nm[0] + self.range_nm[1])


LANDSAT8: dict[str, Band] = {b.name: b for b in (
    Band("B01", "coastal aerosol", (433, 453), 30),
    Band("B02", "blue", (450, 515), 30),
    Band("B03", "green", (525, 600), 30),
    Band("B04", "red", (630, 680), 30),
    Band("B05", "near infrared", (845, 885), 30),
    Band("B06", "SWIR 1", (1560, 1660), 30),
    Band("B07", "SWIR 2", (2100, 2300), 30),
    Band("B08", "panchromatic", PAN_RANGE_NM, 15, MTF_PAN, pan=True),
    Band("B09", "cirrus", (1360, 1390), 30),
    Band("B10", "TIRS thermal 1 (100 m, delivered at 30 m)", (10600, 11190), 30),
    Band("B11", "TIRS thermal 2 (100 m, delivered at 30 m)", (11500, 12510), 30),
)}

SENTINEL2: dict[str, Band] = {b.name: b for b in (
    Band("B01", "coastal aerosol", (433, 453), 60),
    Band("B02", "blue", (458, 523), 10),
    Band("B03", "green", (543, 578), 10),
    Band("B04", "red", (650, 680), 10),
    Band("B05", "red edge 1", (698, 713), 20),
    Band("B06", "red edge 2", (733, 748), 20),
    Band("B07", "red edge 3", (773, 793), 20),
    Band("B08", "near infrared", (785, 900), 10),
    Band("B8A", "narrow near infrared", (855, 875), 20),
    Band("B09", "water vapour", (935, 955), 60),
    Band("B10", "SWIR cirrus", (1360, 1390), 60),
    Band("B11", "SWIR 1", (1565, 1655), 20),
    Band("B12", "SWIR 2", (2100, 2280), 20),
)}

SENSORS: dict[str, dict[str, Band]] = {"landsat8": LANDSAT8, "sentinel2": SENTINEL2}

#: the Landsat-8 reflective multispectral bands that are pan-sharpened (30 m, B1-B7)
LANDSAT8_MS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07")
#: the 13 Sentinel-2 L1C bands in product order
SENTINEL2_BANDS = tuple(SENTINEL2)


def sensor_of(names: list[str] | tuple[str, ...]) -> str:
    """``"sentinel2"`` when the names include a Sentinel-only band (B8A, B12) or 13 bands, else ``"landsat8"``."""
    if "B8A" in names or "B12" in names or len(names) == 13:
        return "sentinel2"
    return "landsat8"


def band_specs(names: list[str] | tuple[str, ...], sensor: str | None = None) -> list[Band]:
    """The :class:`Band` of each name (``KeyError`` naming the band when a sensor lacks it)."""
    table = SENSORS[sensor or sensor_of(names)]
    missing = [n for n in names if n not in table]
    if missing:
        raise KeyError(f"bands {missing} are not {sensor or sensor_of(names)} bands ({list(table)})")
    return [table[n] for n in names]


def pan_weights(bands: list[Band], pan_range: tuple[float, float] = PAN_RANGE_NM) -> list[float]:
    """Weights (sum 1) of each band in a synthetic pan: FWHM overlap with ``pan_range``.

    Raises ``ValueError`` when no band overlaps the pan interval (no pan can be synthesised).
    """
    lo, hi = pan_range
    overlap = [max(0.0, min(hi, b.range_nm[1]) - max(lo, b.range_nm[0])) for b in bands]
    total = sum(overlap)
    if total <= 0:
        raise ValueError(f"no band overlaps the pan range {pan_range} nm; cannot synthesise a pan image")
    return [o / total for o in overlap]
