"""DICOM reader: a folder, a list of files or one multi-frame (enhanced) file -> lazy xarray.

What it returns
    ``read(paths, series=None)`` returns ``{"/": ds}`` (several groups for a multi-volume
    multi-frame file, below) where ``ds["image"]`` has dims
    ``("z", "y", "x")`` and dask chunks that are slabs of whole slices of at most ~8 MiB (the NIfTI
    reader's convention), so a store written from it streams slab by slab. Nothing but headers is
    read up front; every slice is decoded only when dask computes its slab: uncompressed
    little-endian pixel data are taken straight from the file bytes at the offset the header parse
    recorded (bit-exact with pydicom, unused high bits corrected the same way), anything else by
    pydicom + pylibjpeg/openjpeg. Each single-frame file is read once: the same bytes feed its
    sha256 (:class:`~scorerecon.modalities.io.digests.StreamedDigest`) and its pixels.

Geometry (the project convention, ``docs/conventions.md`` section 2)
    * ``y`` indexes DICOM rows, ``x`` columns, ``z`` slices sorted *ascending along the slice
      normal* ``n = row_dir x col_dir`` (``row_dir`` = first three values of
      ImageOrientationPatient, the direction of increasing column index).
    * ``ds.attrs["affine"]`` is the 4x4 RAS+ affine mapping ``(i, j, k, 1)`` to mm, where ``i``
      indexes ``x``, ``j`` indexes ``y`` and ``k`` indexes ``z`` -- exactly NIfTI's convention, so the
      stored array is nibabel's ``(i, j, k)`` array transposed to ``(k, j, i)``. It is built in LPS
      (DICOM patient space) from ImageOrientationPatient, PixelSpacing and ImagePositionPatient
      and converted once here by negating its first two rows. The slice column is the mean step
      between the first and the last slice, so a tilted-gantry series keeps its true (sheared)
      geometry.
    * ``ds.attrs["spacing"] = [sx, sy, sz]`` in mm: column spacing, row spacing and the slice
      separation along the normal (SliceThickness, else 1.0, for a one-slice series). The ``x``,
      ``y``, ``z`` coordinates are ``index * spacing``.

Pixel values
    RescaleSlope/RescaleIntercept are applied. With no rescale (slope 1, intercept 0) the stored
    integer dtype is kept. With integral slope and intercept (the usual CT case, e.g. 1 and -1024)
    the result is computed exactly in integers: int16 when the BitsStored range maps into int16,
    else int32 -- HU stay exact and compact. Any other rescale gives float32. A stored value
    outside the BitsStored range is reported as an error rather than wrapped. Values are kept as
    stored otherwise: MONOCHROME1 is not inverted and PixelPaddingValue is not masked (both facts
    are in ``attrs["dicom"]`` for a task that needs them).

Multi-frame files holding several volumes
    An enhanced multi-frame file may hold several stacks and acquisitions in one series (e.g.
    T2, T1 and post-contrast T1 axial plus a post-contrast coronal stack, each its own geometry).
    Its DimensionIndexSequence says how: every dimension other than the in-stack position
    (InStackPositionNumber / ImagePositionPatient) -- StackID, FrameAcquisitionNumber,
    TemporalPositionIndex, an echo -- separates volumes. Each volume is checked and sorted on its
    own and becomes one group named by its varying values (``stack1_acq2``; ``attrs["frame_group"]``
    records them); one volume is the root group ``"/"``. ``stack=`` / ``acquisition=`` (``ingest
    --stack/--acquisition``) keep the frames with that StackID / FrameAcquisitionNumber; on
    single-frame files ``acquisition=`` selects an AcquisitionNumber. The split is written here:
    nibabel's ``MultiframeWrapper`` keeps one StackID and stacks the other dimensions as a 4th
    axis of one geometry, and highdicom's volume API would be a second pixel path for one rule.
    Messages about a frame name it after the file: ``FILE: frame 6: ... in frame 1`` (1-based).

Validation (each an :class:`InputError` naming the file, one line)
    not a DICOM file, truncated file, several series without ``series=``, unknown ``series=``,
    missing pixel data, inconsistent Rows/Columns, PixelSpacing or ImageOrientationPatient,
    duplicate slice positions, a missing slice (a gap > 1.5x the median spacing), inconsistent
    slice spacing, colour images (not supported). Decoding errors found while streaming are also
    raised as :class:`InputError`, so the store writer removes its partial output.

Identifiers
    ``ds.attrs["dicom"]`` is a JSON-able dict with the patient/study/series/frame-of-reference
    tags of the first file, and per-slice lists (in ``z`` order) of SOPInstanceUID,
    SOPClassUID, InstanceNumber and ImagePositionPatient, needed to write a derived series later.
    RescaleSlope/RescaleIntercept are scalars when constant over the series, else per-slice
    lists. The sources are only ever opened for reading.
"""

from __future__ import annotations

import copy
import io
import os
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import nibabel.orientations as orientations
import numpy as np
import pydicom
import xarray as xr
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.valuerep import PersonName

from scorerecon.errors import InputError
from scorerecon.modalities.io.digests import StreamedDigest
from scorerecon.modalities.io.store import provenance_attrs

READER = "scorerecon.modalities.io.dicom"
ROOT = "/"
READER_VERSION = f"1.0 (pydicom {pydicom.__version__})"

#: Header tags copied into ``attrs["dicom"]`` from the first file (patient, study, series,
#: frame of reference and equipment modules, plus display/storage facts).
IDENTIFYING_TAGS: tuple[str, ...] = (
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "PatientAge", "PatientWeight",
    "PatientPosition", "IssuerOfPatientID", "OtherPatientIDs", "PatientIdentityRemoved",
    "StudyInstanceUID", "StudyID", "StudyDate", "StudyTime", "StudyDescription", "AccessionNumber",
    "ReferringPhysicianName",
    "SeriesInstanceUID", "SeriesNumber", "SeriesDate", "SeriesTime", "SeriesDescription", "Modality",
    "BodyPartExamined", "Laterality", "ProtocolName",
    "FrameOfReferenceUID", "PositionReferenceIndicator",
    "Manufacturer", "ManufacturerModelName", "InstitutionName", "StationName", "SoftwareVersions",
    "SpecificCharacterSet", "ImageType", "AcquisitionNumber",
    "PhotometricInterpretation", "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation",
    "SliceThickness", "SpacingBetweenSlices", "RescaleType", "WindowCenter", "WindowWidth",
    "KVP", "ConvolutionKernel", "MagneticFieldStrength", "RepetitionTime", "EchoTime", "FlipAngle",
    "PixelPaddingValue",
)

#: Upper bound of one dask/zarr chunk (a slab of whole slices), as in the NIfTI reader.
CHUNK_BYTES = 8 * 2**20

#: Transfer syntaxes whose pixel data are the raw little-endian array (read without pydicom).
_NATIVE_LITTLE_ENDIAN = ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1")

_DICOM_SUFFIXES = (".dcm", ".ima", ".dicom")
_PIXEL_TAGS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
_UNDEFINED_LENGTH = 0xFFFFFFFF


@dataclass
class _Slice:
    """One 2D image: a single-frame file or one frame of a multi-frame file."""

    path: Path
    frame: int | None
    rows: int
    cols: int
    orientation: np.ndarray | None
    position: np.ndarray | None
    pixel_spacing: tuple[float, float]
    thickness: float | None
    slope: float
    intercept: float
    sop_instance_uid: str | None
    sop_class_uid: str | None
    instance_number: int | None
    pixel_offset: int | None = None  # byte offset of raw native pixel data (single-frame LE files)
    acquisition_number: int | None = None  # AcquisitionNumber (single-frame files) or FrameAcquisitionNumber

    @property
    def name(self) -> str:
        """How messages name this image: its file's name, or ``frame N`` (1-based) of a multi-frame file."""
        return self.path.name if self.frame is None else f"frame {self.frame + 1}"

    @property
    def where(self) -> str:
        """Prefix of a message about this image: empty for a single-frame file (the path says it all)."""
        return "" if self.frame is None else f"frame {self.frame + 1}: "


@dataclass
class _Series:
    uid: str
    headers: list[tuple[Path, Dataset]] = field(default_factory=list)


def _jsonable(value: Any) -> Any:
    """pydicom values (MultiValue, DSfloat, IS, PersonName, UID, Sequence) as plain JSON types."""
    if isinstance(value, (MultiValue, list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, PersonName):
        return str(value)
    if isinstance(value, pydicom.sequence.Sequence):
        return None  # sequences are not kept
    if isinstance(value, bytes):
        return None
    if isinstance(value, float):
        return float(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, str):
        return str(value)
    return None if value is None else str(value)


def _collect_files(paths: Sequence[Path]) -> list[tuple[Path, bool]]:
    """Files to read, each with ``strict``: must it be DICOM (listed by the user or named *.dcm)?

    Folders are walked recursively; hidden files and DICOMDIR are skipped; other non-DICOM files
    in a folder (notes, thumbnails) are ignored unless their name claims DICOM.
    """
    files: list[tuple[Path, bool]] = []
    for path in paths:
        if path.is_dir():
            for child in sorted(path.rglob("*")):
                if child.is_file() and not child.name.startswith(".") and child.name.upper() != "DICOMDIR":
                    files.append((child, child.suffix.lower() in _DICOM_SUFFIXES))
        else:
            files.append((path, True))
    if not files:
        raise InputError(paths[0], "no files found in this folder")
    return files


def _check_not_truncated(path: Path, ds: Dataset) -> None:
    """Every top-level element whose value was not read yet must lie inside the file."""
    size = path.stat().st_size
    for tag in tuple(ds.keys()):  # iterating the Dataset itself would read deferred values
        elem = ds.get_item(tag, keep_deferred=True)
        tell = getattr(elem, "value_tell", None)
        length = getattr(elem, "length", None)
        if tell is not None and length not in (None, _UNDEFINED_LENGTH) and tell + length > size:
            raise InputError(path, f"truncated DICOM file: element {elem.tag} needs {tell + length} bytes, "
                                   f"file has {size}")


def _read_header(path: Path, strict: bool) -> Dataset | None:
    """Parse a file's header (pixel data deferred); ``None`` for a skippable non-DICOM file."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(132)
    except OSError as exc:
        raise InputError(path, f"cannot read file ({exc.strerror})") from None
    has_marker = head[128:132] == b"DICM"
    # A file without the 128-byte preamble may still be DICOM if it starts with a group-0008 tag.
    if not has_marker and not head.startswith((b"\x08\x00", b"\x02\x00")):
        if strict:
            raise InputError(path, "not a DICOM file (no 'DICM' marker and no DICOM data elements)")
        return None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            ds = pydicom.dcmread(path, defer_size="64 KB", force=not has_marker)
        except (InvalidDicomError, EOFError, ValueError, KeyError, TypeError, OSError) as exc:
            if strict or has_marker:
                raise InputError(path, f"unreadable DICOM file ({type(exc).__name__}: {exc})") from None
            return None
    for warning in caught:
        if "End of file reached" in str(warning.message):
            raise InputError(path, "truncated DICOM file (pixel data ends before its delimiter)")
    if len(ds) == 0:
        if has_marker:
            raise InputError(path, "truncated DICOM file (no data elements after the file meta)")
        if strict:
            raise InputError(path, "not a DICOM file")
        return None
    _check_not_truncated(path, ds)
    return ds


def _has_pixels(ds: Dataset) -> bool:
    return any(tag in ds for tag in _PIXEL_TAGS)


def _prefetch_header(path: Path, nbytes: int = 64 * 1024) -> None:
    """Ask the kernel to start reading a file's first bytes (its header) in the background."""
    if not hasattr(os, "posix_fadvise"):
        return
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return  # reported with the file's name when its header is read
    try:
        os.posix_fadvise(fd, 0, nbytes, os.POSIX_FADV_WILLNEED)
    finally:
        os.close(fd)


def _group_series(files: Iterable[tuple[Path, bool]], lookahead: int = 64) -> dict[str, _Series]:
    """Parse every header, grouped by SeriesInstanceUID; the next ``lookahead`` headers are
    prefetched so that parsing thousands of small files is not one disk round trip per file."""
    files = list(files)
    series: dict[str, _Series] = {}
    for index, (path, strict) in enumerate(files):
        if index == 0:
            for ahead, _ in files[:lookahead]:
                _prefetch_header(ahead)
        elif index + lookahead - 1 < len(files):
            _prefetch_header(files[index + lookahead - 1][0])
        ds = _read_header(path, strict)
        if ds is None:
            continue
        uid = str(ds.get("SeriesInstanceUID", ""))
        series.setdefault(uid, _Series(uid)).headers.append((path, ds))
    return series


def _describe(series: _Series) -> str:
    first = series.headers[0][1]
    desc = str(first.get("SeriesDescription", "")).strip()
    return (f"{series.uid or '(no SeriesInstanceUID)'} ({first.get('Modality', '?')}, {len(series.headers)} "
            f"file{'s' if len(series.headers) != 1 else ''}{', ' + repr(desc) if desc else ''})")


def _select_series(groups: dict[str, _Series], where: Path, wanted: str | None) -> _Series:
    if not groups:
        raise InputError(where, "no DICOM files found")
    if wanted is not None:
        if wanted in groups:
            return groups[wanted]
        raise InputError(where, f"series {wanted!r} not found; available: "
                                + "; ".join(_describe(s) for s in groups.values()))
    with_pixels = {uid: s for uid, s in groups.items() if any(_has_pixels(ds) for _, ds in s.headers)}
    candidates = with_pixels or groups
    if len(candidates) > 1:
        raise InputError(where, f"holds {len(candidates)} DICOM series; choose one with --series: "
                                + "; ".join(_describe(s) for s in candidates.values()))
    return next(iter(candidates.values()))


def _floats(value: Any, count: int) -> np.ndarray | None:
    if value is None:
        return None
    try:
        arr = np.asarray([float(v) for v in value], dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return arr if arr.shape == (count,) and np.all(np.isfinite(arr)) else None


def _first_item(ds: Dataset | None, sequence: str) -> Dataset | None:
    if ds is None:
        return None
    seq = ds.get(sequence)
    return seq[0] if seq else None


def _frame_value(ds: Dataset, frame: int | None, sequence: str, keyword: str) -> Any:
    """A functional-group value for one frame (per-frame first, then shared), else top level."""
    if frame is not None:
        per_frame = ds.get("PerFrameFunctionalGroupsSequence")
        groups = [per_frame[frame] if per_frame and frame < len(per_frame) else None,
                  _first_item(ds, "SharedFunctionalGroupsSequence")]
        for group in groups:
            item = _first_item(group, sequence)
            if item is not None and keyword in item:
                return item.get(keyword)
    return ds.get(keyword)


def _make_slice(path: Path, ds: Dataset, frame: int | None) -> _Slice:
    def value(seq: str, key: str) -> Any:
        return _frame_value(ds, frame, seq, key)

    spacing = _floats(value("PixelMeasuresSequence", "PixelSpacing"), 2)
    thickness = value("PixelMeasuresSequence", "SliceThickness")
    slope = value("PixelValueTransformationSequence", "RescaleSlope")
    intercept = value("PixelValueTransformationSequence", "RescaleIntercept")
    number = ds.get("InstanceNumber")
    acquisition = value("FrameContentSequence", "FrameAcquisitionNumber") if frame is not None \
        else ds.get("AcquisitionNumber")
    return _Slice(
        path=path, frame=frame, rows=int(ds.Rows), cols=int(ds.Columns),
        orientation=_floats(value("PlaneOrientationSequence", "ImageOrientationPatient"), 6),
        position=_floats(value("PlanePositionSequence", "ImagePositionPatient"), 3),
        pixel_spacing=(float(spacing[0]), float(spacing[1])) if spacing is not None else (1.0, 1.0),
        thickness=float(thickness) if thickness not in (None, "") else None,
        slope=float(slope) if slope not in (None, "") else 1.0,
        intercept=float(intercept) if intercept not in (None, "") else 0.0,
        sop_instance_uid=str(ds.SOPInstanceUID) if "SOPInstanceUID" in ds else None,
        sop_class_uid=str(ds.SOPClassUID) if "SOPClassUID" in ds else None,
        instance_number=int(number) if number not in (None, "") else None,
        pixel_offset=_native_pixel_offset(ds) if frame is None else None,
        acquisition_number=int(acquisition) if acquisition not in (None, "") else None,
    )


def _native_pixel_offset(ds: Dataset) -> int | None:
    """Where a single-frame, uncompressed little-endian greyscale file's pixel bytes start, else None."""
    syntax = str(ds.file_meta.get("TransferSyntaxUID", "")) if ds.file_meta else ""
    if syntax not in _NATIVE_LITTLE_ENDIAN or int(ds.get("SamplesPerPixel", 1)) != 1 \
            or int(ds.get("NumberOfFrames", 1) or 1) != 1 or "PixelData" not in ds:
        return None
    bits = int(ds.get("BitsAllocated", 0))
    if bits not in (8, 16, 32):
        return None
    elem = ds.get_item("PixelData", keep_deferred=True)
    tell, length = getattr(elem, "value_tell", None), getattr(elem, "length", None)
    needed = int(ds.Rows) * int(ds.Columns) * bits // 8
    if tell is None or length in (None, _UNDEFINED_LENGTH) or length < needed:
        return None
    return int(tell)


def _slices_of(series: _Series) -> tuple[list[_Slice], bool]:
    """All 2D images of a series, plus whether it came from one multi-frame file."""
    for path, ds in series.headers:
        if not _has_pixels(ds):
            raise InputError(path, "missing pixel data (no PixelData element)")
        for keyword in ("Rows", "Columns", "BitsAllocated"):
            if keyword not in ds:
                raise InputError(path, f"missing {keyword}: not an image DICOM file")
        if int(ds.get("SamplesPerPixel", 1)) != 1:
            raise InputError(path, f"colour DICOM (SamplesPerPixel={ds.SamplesPerPixel}) is not supported")
    frames = [int(ds.get("NumberOfFrames", 1) or 1) for _, ds in series.headers]
    if len(series.headers) == 1 and (frames[0] > 1 or "PerFrameFunctionalGroupsSequence" in series.headers[0][1]):
        path, ds = series.headers[0]
        return [_make_slice(path, ds, f) for f in range(frames[0])], True
    if any(n > 1 for n in frames):
        path = series.headers[frames.index(max(frames))][0]
        raise InputError(path, "series mixes a multi-frame file with other files; pass the multi-frame file alone")
    return [_make_slice(path, ds, None) for path, ds in series.headers], False


def _require_same(slices: list[_Slice], attr: str, label: str, close: bool = False) -> None:
    ref = getattr(slices[0], attr)
    for s in slices[1:]:
        value = getattr(s, attr)
        same = (ref is None and value is None) or (
            ref is not None and value is not None and (
                np.allclose(value, ref, atol=1e-4) if close else value == ref))
        if not same:
            raise InputError(s.path, f"{s.where}inconsistent {label}: {value} here vs {ref} in {slices[0].name}")


def _order_and_geometry(slices: list[_Slice], multiframe: bool, fallback_step: float | None = None,
                        ) -> tuple[list[_Slice], np.ndarray, list[float], str | None]:
    """Sort slices along the normal, validate spacing, return (slices, LPS affine, spacing, note)."""
    _require_same(slices, "rows", "Rows")
    _require_same(slices, "cols", "Columns")
    _require_same(slices, "pixel_spacing", "PixelSpacing", close=True)
    _require_same(slices, "orientation", "ImageOrientationPatient", close=True)
    sy, sx = slices[0].pixel_spacing
    note = None
    orientation = slices[0].orientation
    have_positions = all(s.position is not None for s in slices)
    if orientation is None or not have_positions:
        if len(slices) > 1 and not multiframe:
            missing = next(s for s in slices if s.position is None or s.orientation is None)
            raise InputError(missing.path, f"{missing.where}no ImagePositionPatient/ImageOrientationPatient: "
                                           "cannot order the slices")
        note = "no patient geometry in the file: identity orientation, origin 0 and file order assumed"
        orientation = np.array([1.0, 0, 0, 0, 1.0, 0])
        step = fallback_step or slices[0].thickness or 1.0
        for k, s in enumerate(slices):
            s.position = np.array([0.0, 0.0, k * step])
    row_dir, col_dir = orientation[:3], orientation[3:]
    normal = np.cross(row_dir, col_dir)
    if not np.isclose(np.linalg.norm(normal), 1.0, atol=1e-3):
        raise InputError(slices[0].path, f"{slices[0].where}ImageOrientationPatient {orientation.tolist()} is not "
                                          "two orthonormal vectors")
    depth = np.array([float(np.dot(s.position, normal)) for s in slices])
    order = np.argsort(depth, kind="stable")
    slices = [slices[i] for i in order]
    depth = depth[order]
    if len(slices) > 1:
        diffs = np.diff(depth)
        dup = int(np.argmin(diffs))
        if diffs[dup] < 1e-3:
            twice = slices[dup + 1]
            hint = ("pick one with --acquisition" if twice.frame is None and len(
                {s.acquisition_number for s in slices}) > 1 else "several acquisitions or echoes mixed in one series?")
            raise InputError(twice.path, f"{twice.where}two slices at the same position ({depth[dup]:.4g} mm along "
                                         f"the normal, also {slices[dup].name}): {hint}")
        median = float(np.median(diffs))
        gap = int(np.argmax(diffs))
        if diffs[gap] > 1.5 * median:
            raise InputError(slices[gap + 1].path,
                             f"{slices[gap + 1].where}missing slice: gap of {diffs[gap]:.4g} mm between "
                             f"{depth[gap]:.4g} and "
                             f"{depth[gap + 1]:.4g} mm along the normal is more than 1.5x the median "
                             f"spacing {median:.4g} mm")
        worst = int(np.argmax(np.abs(diffs - median)))
        if abs(diffs[worst] - median) > max(0.01, 0.01 * median):
            raise InputError(slices[worst + 1].path,
                             f"{slices[worst + 1].where}inconsistent slice spacing: {diffs[worst]:.4g} mm before "
                             "this slice vs median "
                             f"{median:.4g} mm (range {diffs.min():.4g}-{diffs.max():.4g} mm)")
        first, last = slices[0].position, slices[-1].position
        step_vec = (last - first) / (len(slices) - 1)
        for k, s in enumerate(slices):
            off = np.linalg.norm(s.position - (first + k * step_vec))
            if off > max(0.01, 0.01 * median):
                raise InputError(s.path, f"{s.where}inconsistent slice positions: ImagePositionPatient "
                                         f"{s.position.tolist()} "
                                         f"is {off:.3g} mm off the line through the first and last slices")
        sz = float(np.dot(step_vec, normal))
    else:
        sz = slices[0].thickness or 1.0
        step_vec = normal * sz
    lps = np.eye(4)
    lps[:3, 0] = row_dir * sx
    lps[:3, 1] = col_dir * sy
    lps[:3, 2] = step_vec
    lps[:3, 3] = slices[0].position
    return slices, lps, [sx, sy, sz], note


def _stored_dtype(ds: Dataset) -> np.dtype:
    if "FloatPixelData" in ds:
        return np.dtype("float32")
    if "DoubleFloatPixelData" in ds:
        return np.dtype("float64")
    bits = int(ds.BitsAllocated)
    if bits not in (8, 16, 32):
        raise InputError(None, f"BitsAllocated={bits} is not supported")
    return np.dtype(f"{'i' if int(ds.get('PixelRepresentation', 0)) else 'u'}{bits // 8}")


def _stored_range(ds: Dataset, dtype: np.dtype) -> tuple[float, float]:
    if dtype.kind == "f":
        return (-np.inf, np.inf)
    bits = int(ds.get("BitsStored", dtype.itemsize * 8))
    if dtype.kind == "i":
        return (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    return (0, 2**bits - 1)


def _output_dtype(slices: list[_Slice], stored: np.dtype, rng: tuple[float, float]) -> tuple[np.dtype, bool]:
    """The output dtype and whether a rescale is applied (see the module docstring)."""
    if all(s.slope == 1.0 and s.intercept == 0.0 for s in slices):
        return stored, False
    integral = all(float(s.slope).is_integer() and float(s.intercept).is_integer() for s in slices)
    if stored.kind in "iu" and integral:
        ends = [v for s in slices for v in (rng[0] * s.slope + s.intercept, rng[1] * s.slope + s.intercept)]
        lo, hi = min(ends), max(ends)
        for candidate in (np.int16, np.int32):
            info = np.iinfo(candidate)
            if info.min <= lo and hi <= info.max:
                return np.dtype(candidate), True
    return np.dtype("float32"), True


def _native_pixels(s: _Slice, raw: bytes, stored: np.dtype, bits_stored: int) -> np.ndarray:
    """The pixel array of an uncompressed little-endian file from its bytes, as pydicom decodes it."""
    count = s.rows * s.cols
    end = s.pixel_offset + count * stored.itemsize
    if len(raw) < end:
        raise InputError(s.path, f"truncated DICOM file: pixel data need {end} bytes, file has {len(raw)}")
    pixels = np.frombuffer(raw, dtype=stored.newbyteorder("<"), count=count, offset=s.pixel_offset)
    pixels = pixels.astype(stored, copy=False).reshape(s.rows, s.cols)  # a read-only view when native
    shift = stored.itemsize * 8 - bits_stored
    if 0 < shift < stored.itemsize * 8:  # pydicom's correction of the unused high bits (PS3.5 8.1.1)
        pixels = np.left_shift(pixels, shift)
        np.right_shift(pixels, shift, out=pixels)
    return pixels


def _load_slice(s: _Slice, stored: np.dtype, rng: tuple[float, float], out: np.dtype, rescale: bool,
                digest: StreamedDigest | None = None, bits_stored: int = 0) -> np.ndarray:
    """Decode one slice (only this frame of a multi-frame file) and apply its rescale.

    A single-frame file is read whole once: its bytes feed ``digest`` and are decoded in memory.
    """
    try:
        if s.frame is None:
            raw = s.path.read_bytes()
            if digest is not None:
                digest.feed(0, raw)
            if s.pixel_offset is not None and stored.kind in "iu":
                pixels = _native_pixels(s, raw, stored, bits_stored or stored.itemsize * 8)
            else:
                pixels = pydicom.pixels.pixel_array(io.BytesIO(raw))
        else:
            pixels = pydicom.pixels.pixel_array(s.path, index=s.frame)
    except InputError:
        raise
    except Exception as exc:  # decoders raise many types; all mean "this file's pixels are unusable"
        raise InputError(s.path, f"{s.where}cannot decode pixel data ({type(exc).__name__}: {exc})") from None
    if pixels.shape != (s.rows, s.cols):
        raise InputError(s.path, f"{s.where}pixel data has shape {pixels.shape}, expected ({s.rows}, {s.cols})")
    native = s.frame is None and s.pixel_offset is not None
    if stored.kind in "iu" and not native:  # the native path's values lie in the range by construction
        lo, hi = pixels.min(), pixels.max()
        if lo < rng[0] or hi > rng[1]:
            raise InputError(s.path, f"{s.where}stored values {lo}..{hi} exceed the BitsStored range "
                                     f"{rng[0]}..{rng[1]}")
    pixels = pixels.astype(stored, copy=False)
    if not rescale:
        return pixels
    if out.kind == "i":
        return (pixels.astype(np.int64) * int(s.slope) + int(s.intercept)).astype(out)
    return (pixels.astype(np.float64) * s.slope + s.intercept).astype(out)


def _dicom_attrs(first: Dataset, slices: list[_Slice]) -> dict[str, Any]:
    attrs: dict[str, Any] = {}
    for keyword in IDENTIFYING_TAGS:
        if keyword in first:
            value = _jsonable(first.get(keyword))
            if value is not None:
                attrs[keyword] = value
    attrs["SOPInstanceUID"] = [s.sop_instance_uid for s in slices]
    attrs["SOPClassUID"] = [s.sop_class_uid for s in slices]
    attrs["InstanceNumber"] = [s.instance_number for s in slices]
    attrs["ImagePositionPatient"] = [[float(v) for v in s.position] for s in slices]
    attrs["ImageOrientationPatient"] = [float(v) for v in slices[0].orientation] \
        if slices[0].orientation is not None else None
    attrs["PixelSpacing"] = list(slices[0].pixel_spacing)
    if slices[0].frame is not None:
        attrs["FrameIndex"] = [s.frame for s in slices]
    for key in ("slope", "intercept"):
        values = [s.slope if key == "slope" else s.intercept for s in slices]
        name = "RescaleSlope" if key == "slope" else "RescaleIntercept"
        attrs[name] = values[0] if len(set(values)) == 1 else values
    attrs["TransferSyntaxUID"] = str(first.file_meta.get("TransferSyntaxUID", "")) if first.file_meta else ""
    return attrs


#: Dimension index pointers that order the frames *inside* one volume; every other dimension of a
#: multi-frame file's DimensionIndexSequence (StackID, FrameAcquisitionNumber, TemporalPositionIndex,
#: an echo time, ...) separates volumes.
_IN_VOLUME_DIMENSIONS = ("InStackPositionNumber", "ImagePositionPatient")

#: Short names of the usual separating dimensions in group names (``stack1_acq2``).
_GROUP_PREFIX = {"StackID": "stack", "FrameAcquisitionNumber": "acq", "TemporalPositionIndex": "t"}


def _dimension_keys(ds: Dataset) -> list[tuple[int, str, str | None]]:
    """The separating dimensions of a multi-frame file: ``(index in DimensionIndexValues, keyword,
    keyword of the functional-group sequence holding it)``, in the file's DimensionIndexSequence order."""
    keys = []
    for index, item in enumerate(ds.get("DimensionIndexSequence") or []):
        pointer = item.get("DimensionIndexPointer")
        keyword = pydicom.datadict.keyword_for_tag(pointer) if pointer is not None else ""
        if keyword in _IN_VOLUME_DIMENSIONS:
            continue
        group = item.get("FunctionalGroupPointer")
        keys.append((index, keyword or str(pointer),
                     pydicom.datadict.keyword_for_tag(group) if group is not None else None))
    return keys


def _frame_key(ds: Dataset, frame: int, keys: list[tuple[int, str, str | None]]) -> tuple[tuple[str, str], ...]:
    """A frame's value of each separating dimension: the attribute itself where its functional group
    holds it directly (StackID "1", FrameAcquisitionNumber 3), else its DimensionIndexValues entry."""
    content = _frame_value(ds, frame, "FrameContentSequence", "DimensionIndexValues")
    indices = list(content) if isinstance(content, (MultiValue, list, tuple)) else [content]
    values = []
    for index, keyword, group in keys:
        value = _frame_value(ds, frame, group, keyword) if group else None
        if value in (None, "") and index < len(indices):
            value = indices[index]
        values.append((keyword, str(value).strip()))
    return tuple(values)


def _group_name(key: tuple[tuple[str, str], ...]) -> str:
    """Store group name of one volume, e.g. ``stack1_acq2`` (letters, digits, ``.``, ``-`` only)."""
    parts = []
    for keyword, value in key:
        clean = "".join(c if c.isalnum() or c in ".-" else "-" for c in value)
        parts.append(f"{_GROUP_PREFIX.get(keyword, keyword)}{clean}")
    return "_".join(parts) or ROOT


def _choose_frames(path: Path, ds: Dataset, slices: list[_Slice], stack: str | None,
                   acquisition: int | None) -> list[_Slice]:
    """The frames of a multi-frame file with the wanted StackID / FrameAcquisitionNumber (``None``: any)."""
    if stack is None and acquisition is None:
        return slices
    stacks = [_frame_value(ds, s.frame, "FrameContentSequence", "StackID") for s in slices]
    stacks = [None if v in (None, "") else str(v).strip() for v in stacks]
    if stack is not None and all(v is None for v in stacks):
        raise InputError(path, "--stack: the frames of this file carry no StackID")
    if acquisition is not None and all(s.acquisition_number is None for s in slices):
        raise InputError(path, "--acquisition: the frames of this file carry no FrameAcquisitionNumber")
    chosen = [s for s, v in zip(slices, stacks, strict=True)
              if (stack is None or v == str(stack).strip())
              and (acquisition is None or s.acquisition_number == acquisition)]
    if not chosen:
        found = sorted({(v or "-", s.acquisition_number) for s, v in zip(slices, stacks, strict=True)},
                       key=lambda pair: (pair[0], pair[1] if pair[1] is not None else -1))
        raise InputError(path, f"no frame has {'StackID ' + repr(stack) if stack is not None else ''}"
                               f"{' and ' if stack is not None and acquisition is not None else ''}"
                               f"{'FrameAcquisitionNumber ' + str(acquisition) if acquisition is not None else ''}"
                               "; the file has (StackID, FrameAcquisitionNumber) "
                               + ", ".join(f"({a}, {b})" for a, b in found))
    return chosen


def _split_volumes(chosen: _Series, slices: list[_Slice], multiframe: bool, stack: str | None,
                   acquisition: int | None) -> dict[str, tuple[dict[str, str], list[_Slice]]]:
    """The regular volumes to read: ``{group name: (separating values, slices)}``.

    A multi-frame file is split by its DimensionIndexSequence: frames that differ in any dimension
    other than the in-stack position (StackID, FrameAcquisitionNumber, ...) belong to different
    volumes, each with its own geometry. A one-volume result is the root group ``"/"``.
    ``--stack``/``--acquisition`` keep the frames with that StackID / FrameAcquisitionNumber
    (for single-frame files, ``--acquisition`` selects by AcquisitionNumber).
    """
    path, ds = chosen.headers[0]
    if not multiframe:
        if stack is not None:
            raise InputError(path, "--stack selects a StackID of an enhanced multi-frame file; these are "
                                   "single-frame files")
        if acquisition is not None:
            numbers = sorted({s.acquisition_number for s in slices if s.acquisition_number is not None})
            slices = [s for s in slices if s.acquisition_number == acquisition]
            if not slices:
                raise InputError(path, f"no file has AcquisitionNumber {acquisition} (found: "
                                       f"{', '.join(map(str, numbers)) or 'none'})")
        return {ROOT: ({}, slices)}
    slices = _choose_frames(path, ds, slices, stack, acquisition)
    keys = _dimension_keys(ds)
    by_key: dict[tuple[tuple[str, str], ...], list[_Slice]] = {}
    for s in slices:
        by_key.setdefault(_frame_key(ds, s.frame, keys), []).append(s)
    varying = [i for i in range(len(keys)) if len({key[i][1] for key in by_key}) > 1]
    if len(by_key) == 1:
        return {ROOT: (dict(next(iter(by_key))), slices)}
    volumes: dict[str, tuple[dict[str, str], list[_Slice]]] = {}
    def natural(key: tuple[tuple[str, str], ...]) -> tuple:
        return tuple((0, int(v), "") if v.lstrip("-").isdigit() else (1, 0, v) for _, v in key)

    for key in sorted(by_key, key=natural):
        volumes[_group_name(tuple(key[i] for i in varying))] = (dict(key), by_key[key])
    return volumes


def read(paths: list[Path], series: str | None = None, stack: str | None = None, acquisition: int | None = None,
         **options: Any) -> dict[str, xr.Dataset]:
    """Read one DICOM series lazily into ``{group: Dataset}`` (see the module docstring).

    ``paths`` is a folder (walked recursively), a list of files, or one multi-frame file.
    ``series`` picks a SeriesInstanceUID when the sources hold several. A multi-frame file holding
    several volumes (stacks, acquisitions: :func:`_split_volumes`) gives one group per volume, named
    like ``stack1_acq2``; ``stack``/``acquisition`` keep only the frames with that StackID /
    FrameAcquisitionNumber, and one volume left is the root group ``"/"``. Other options are
    accepted and ignored, so the ingest dispatcher can pass the same options to every reader.
    """
    paths = [Path(p) for p in paths]
    where = paths[0] if len(paths) == 1 else paths[0].parent
    chosen = _select_series(_group_series(_collect_files(paths)), where, series)
    slices, multiframe = _slices_of(chosen)
    acquisition = None if acquisition is None else int(acquisition)
    volumes = _split_volumes(chosen, slices, multiframe, stack, acquisition)
    shared = None
    if multiframe:  # one file behind every volume: hash it once
        shared = provenance_attrs(READER, READER_VERSION, [chosen.headers[0][0]])
    groups = {}
    for name, (key, members) in volumes.items():
        groups[name] = _volume(chosen, members, multiframe, shared)
        if key:
            groups[name].attrs["frame_group"] = {**key, "frames": len(members)}
    return groups


def _volume(chosen: _Series, slices: list[_Slice], multiframe: bool, shared: dict[str, Any] | None) -> xr.Dataset:
    """One regular volume of ``slices`` as a lazy Dataset (geometry checked, sorted along the normal)."""
    first_path, first = chosen.headers[0]
    between = first.get("SpacingBetweenSlices")
    slices, lps, spacing, note = _order_and_geometry(slices, multiframe, float(between) if between else None)
    try:
        stored = _stored_dtype(first)
    except InputError as exc:
        raise InputError(first_path, exc.problem) from None
    rng = _stored_range(first, stored)
    out, rescale = _output_dtype(slices, stored, rng)

    ny, nx = slices[0].rows, slices[0].cols
    sources = list(dict.fromkeys(s.path for s in slices))
    streamed = {path: StreamedDigest(path) for path in sources} if not multiframe else {}
    bits_stored = int(first.get("BitsStored", stored.itemsize * 8))
    per_slab = int(max(1, CHUNK_BYTES // (ny * nx * max(stored.itemsize, out.itemsize))))
    starts = list(range(0, len(slices), per_slab))

    def load_block(block_id: tuple[int, int, int]) -> np.ndarray:
        k0 = starts[block_id[0]]
        members = slices[k0:k0 + per_slab]
        block = np.empty((len(members), ny, nx), dtype=out)
        for i, s in enumerate(members):
            block[i] = _load_slice(s, stored, rng, out, rescale, streamed.get(s.path), bits_stored)
        return block

    # One graph layer for the whole series (a stack of per-file arrays makes one layer per
    # file, and dask's graph optimisation grows faster than linearly in the layer count).
    token = dask.base.tokenize(READER, [(str(s.path), s.frame) for s in slices], str(out), rescale)
    chunks_z = tuple(min(per_slab, len(slices) - k0) for k0 in starts)
    data = da.map_blocks(load_block, dtype=out, chunks=(chunks_z, (ny,), (nx,)),
                         meta=np.empty((0, 0, 0), dtype=out), name=f"dicom-{token}")
    affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps  # LPS -> RAS
    modality = str(first.get("Modality", "OT"))
    image_attrs: dict[str, Any] = {"long_name": "image"}
    if rescale or modality == "CT":
        units = str(first.get("RescaleType", "")) or ("HU" if modality == "CT" else "")
        if units:
            image_attrs["units"] = units
    image = xr.Variable(("z", "y", "x"), data, attrs=image_attrs)
    coords = {name: (name, np.arange(n) * step, {"units": "mm"})
              for name, n, step in (("z", len(slices), spacing[2]), ("y", ny, spacing[1]), ("x", nx, spacing[0]))}
    attrs: dict[str, Any] = {
        "affine": affine.tolist(),
        "spacing": spacing,
        "modality": modality,
        "orientation": "".join(orientations.aff2axcodes(affine)),
        "affine_source": "DICOM ImageOrientationPatient/ImagePositionPatient/PixelSpacing (LPS->RAS)",
        "dicom": _dicom_attrs(first, slices),
        **(copy.deepcopy(shared) if shared is not None else
           provenance_attrs(READER, READER_VERSION, sources, {p.resolve(): d for p, d in streamed.items()})),
    }
    if note:
        attrs["geometry_note"] = note
    return xr.Dataset({"image": image}, coords=coords, attrs=attrs)
