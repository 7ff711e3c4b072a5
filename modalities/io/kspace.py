"""Raw MRI k-space reader (Siemens twix, BART cfl/hdr, fastMRI HDF5, NumPy .npy) -> lazy xarray.

THE FFT convention of the project
    k-space is stored *centred*: the DC sample of an ``n``-point axis is at index ``n // 2``.
    Images and k-space are related by orthonormal, centred 2D transforms over the last two axes
    ``(ky, kx)`` <-> ``(y, x)``::

        image  = fftshift(ifft2(ifftshift(kspace), norm="ortho"))   # kspace_to_image
        kspace = fftshift(fft2(ifftshift(image), norm="ortho"))     # image_to_kspace

    (the fastMRI convention). ``norm="ortho"`` makes the pair unitary: energy is preserved and the
    adjoint of the forward operator is its inverse. :func:`kspace_to_image` and
    :func:`image_to_kspace` implement it in NumPy; every operator in the project must agree.
    Siemens twix and fastMRI data already put DC at ``n // 2`` (twix's ``CenterLin``/``CenterCol``
    are recorded in attrs); BART and .npy data are taken as given.

What it returns
    ``read(paths)`` returns ``{"/": ds}`` with ``ds["kspace"]``: complex64, dims
    ``("coil", "z", "ky", "kx")``, one dask chunk per ``z`` (all coils of one slice: what a 2D
    multi-coil reconstruction consumes), read lazily from the file (twix data blocks, a memory
    map of .cfl/.npy, an HDF5 dataset). ``z`` is the slice index of a 2D multi-slice scan, or for
    a 3D scan the partition index, still Fourier-encoded (``attrs["z_encoding"]`` says which).
    A fastMRI file's ``reconstruction_rss``/``reconstruction_esc`` image, if present, is returned
    as a second group ``"reference"`` with ``image`` dims ``("z", "y", "x")``.

Formats
    * Siemens twix (``.dat``, VB and VD/VE) via ``twixtools``: the image scan of the last
      measurement; readout oversampling is kept (``attrs["readout_oversampling"]``); averages
      and segments are averaged by twixtools' defaults; other non-singleton loop counters
      (echoes, repetitions, phases, sets) are refused rather than silently dropped.
    * BART ``.cfl``/``.hdr``: the ``.hdr`` lists dims in Fortran order ``READ, PHS1, PHS2, COIL,
      ...`` and the ``.cfl`` is raw little-endian complex64, Fortran order. The format is two
      lines of text plus a raw array, so it is parsed here directly (BART's own ``cfl.py`` does
      the same); dims beyond COIL must be 1. Spatial dims map to ``(z, ky, kx)`` by one rule
      (:func:`bart_axes`): the two-dimensional k-space plane is made of the non-singleton spatial
      dims, the lower BART dim being ``kx``, the higher ``ky``, and the singleton one is ``z``.
      So 2-D data ``(READ, PHS1, 1)`` are ``kx`` = READ, ``ky`` = PHS1, and a plane of a 3-D scan
      whose readout was transformed and one position taken, ``(1, PHS1, PHS2)`` (BART's in-vivo
      example ``1 180 230 8``), is ``kx`` = PHS1, ``ky`` = PHS2 -- one 180 x 230 slice, not 230
      one-line slices. With three non-singleton dims ``z`` is PHS2 (``kx`` READ, ``ky`` PHS1), kept
      as stored. ``attrs["bart_axes"]`` records the mapping.
    * fastMRI HDF5 (``.h5``): dataset ``kspace`` shaped ``(slices, coils, ky, kx)`` or
      ``(slices, ky, kx)`` (single coil); ``ismrmrd_header`` and file attrs are kept.
    * ``.npy`` complex arrays: ndim 2, 3, 4 read as ``(ky, kx)``, ``(coil, ky, kx)``,
      ``(coil, z, ky, kx)``.

Wrong shapes, real-valued data and unreadable files are :class:`InputError` naming the file.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import h5py
import numpy as np
import xarray as xr

from scorerecon.errors import InputError
from scorerecon.modalities.io.store import provenance_attrs

READER = "scorerecon.modalities.io.kspace"
READER_VERSION = "1.0"
DIMS = ("coil", "z", "ky", "kx")


def kspace_to_image(k: np.ndarray) -> np.ndarray:
    """Centred orthonormal inverse 2D FFT over the last two axes (THE project convention)."""
    axes = (-2, -1)
    return np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(k, axes=axes), axes=axes, norm="ortho"), axes=axes)


def image_to_kspace(x: np.ndarray) -> np.ndarray:
    """Centred orthonormal forward 2D FFT over the last two axes; inverse of :func:`kspace_to_image`."""
    axes = (-2, -1)
    return np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(x, axes=axes), axes=axes, norm="ortho"), axes=axes)


def _as_complex64(arr: da.Array, path: Path) -> da.Array:
    if not np.issubdtype(arr.dtype, np.complexfloating):
        raise InputError(path, f"k-space must be complex, got real dtype {arr.dtype}")
    return arr.astype(np.complex64)


def _dataset(path: Path, data: da.Array, fmt: str, sources: list[Path], extra: dict[str, Any]) -> xr.Dataset:
    """Wrap a (coil, z, ky, kx) dask array with the project's attrs, one chunk per z."""
    if data.ndim != 4:
        raise InputError(path, f"k-space must map to 4 dims (coil, z, ky, kx), got shape {data.shape}")
    if any(n == 0 for n in data.shape):
        raise InputError(path, f"k-space has a zero-size dimension: shape {data.shape}")
    ncoil, _, nky, nkx = data.shape
    data = _as_complex64(data, path).rechunk((ncoil, 1, nky, nkx))
    attrs = {"format": fmt, "modality": "MR", "fft_convention":
             "centred (DC at n//2); image = fftshift(ifft2(ifftshift(k), norm='ortho')) over (ky, kx)",
             "z_encoding": "slice", **extra, **provenance_attrs(READER, READER_VERSION, sources)}
    coords = {name: (name, np.arange(n)) for name, n in zip(DIMS, data.shape, strict=True)}
    return xr.Dataset({"kspace": xr.Variable(DIMS, data)}, coords=coords, attrs=attrs)


# --------------------------------------------------------------------------------------- .npy
def _read_npy(path: Path) -> dict[str, xr.Dataset]:
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise InputError(path, f"not a readable .npy array ({type(exc).__name__}: {exc})") from None
    if not isinstance(arr, np.ndarray):
        raise InputError(path, "expected one array, found an archive")
    if not np.issubdtype(arr.dtype, np.complexfloating):
        raise InputError(path, f"k-space must be complex, got real dtype {arr.dtype}")
    if arr.ndim not in (2, 3, 4):
        raise InputError(path, f"k-space .npy must have 2-4 dims ((ky,kx), (coil,ky,kx), (coil,z,ky,kx)), "
                               f"got shape {arr.shape}")
    chunks = (-1, 1, -1, -1) if arr.ndim == 4 else -1  # one slice (all coils) per chunk
    data = da.from_array(arr, chunks=chunks, asarray=False)
    if arr.ndim == 2:
        data = data[None, None]
    elif arr.ndim == 3:
        data = data[:, None]
    return {"/": _dataset(path, data, "npy", [path], {"npy_shape": list(arr.shape)})}


# --------------------------------------------------------------------------------------- BART
def _bart_pair(paths: list[Path]) -> tuple[Path, Path]:
    stems = {p.with_suffix("") for p in paths}
    if len(stems) != 1:
        raise InputError(paths[0], "give one BART .cfl/.hdr pair at a time")
    base = stems.pop()
    cfl, hdr = base.with_suffix(".cfl"), base.with_suffix(".hdr")
    for needed in (cfl, hdr):
        if not needed.exists():
            raise InputError(needed, "missing half of a BART .cfl/.hdr pair")
    return cfl, hdr


def _read_bart(paths: list[Path]) -> dict[str, xr.Dataset]:
    cfl, hdr = _bart_pair(paths)
    try:
        lines = [ln.strip() for ln in hdr.read_text(encoding="ascii").splitlines()]
        dims = [int(v) for v in lines[lines.index("# Dimensions") + 1].split()]
    except (ValueError, IndexError, UnicodeDecodeError) as exc:
        raise InputError(hdr, f"not a BART header: need '# Dimensions' and a line of integers ({exc})") from None
    if not dims or any(n < 1 for n in dims):
        raise InputError(hdr, f"BART dims must be positive integers, got {dims}")
    dims = dims + [1] * max(0, 4 - len(dims))
    if any(n != 1 for n in dims[4:]):
        raise InputError(hdr, f"BART dims beyond READ,PHS1,PHS2,COIL must be 1, got {dims}")
    count = int(np.prod(dims, dtype=np.int64))
    size = cfl.stat().st_size
    if size != count * 8:
        raise InputError(cfl, f"size {size} bytes does not match dims {dims[:4]} ({count * 8} bytes of complex64)")
    kx, ky, z = bart_axes(dims)
    arr = np.memmap(cfl, dtype="<c8", mode="r", shape=tuple(dims[:4]), order="F")  # (READ, PHS1, PHS2, COIL)
    chunks = tuple(1 if axis == z else -1 for axis in range(4))
    data = da.from_array(arr, chunks=chunks, asarray=False).transpose(3, z, ky, kx)
    names = ("READ", "PHS1", "PHS2")
    extra = {"bart_dims": dims, "bart_axes": {"kx": names[kx], "ky": names[ky], "z": names[z]}}
    if dims[z] > 1:
        extra["z_encoding"] = "PHS2 as given (Fourier-encoded kz unless transformed before saving)"
    return {"/": _dataset(cfl, data, "bart", [hdr, cfl], extra)}


def bart_axes(dims: list[int]) -> tuple[int, int, int]:
    """Which BART spatial dims (0 READ, 1 PHS1, 2 PHS2) become ``kx``, ``ky`` and ``z``.

    The rule (module docstring): the 2-D plane is made of the non-singleton spatial dims, the
    lower BART dim as ``kx`` (BART's fastest axis, as for READ, PHS1 of 2-D data) and the higher
    as ``ky``; ``z`` is the one left. ``(1, 180, 230)`` -> ``kx`` PHS1, ``ky`` PHS2, ``z`` READ (one
    slice); ``(256, 256, 1)`` -> READ, PHS1, PHS2; three non-singleton dims keep READ, PHS1, PHS2.
    """
    spatial = [int(n) for n in dims[:3]]
    order = [i for i in range(3) if spatial[i] > 1] + [i for i in range(3) if spatial[i] == 1]
    kx, ky = sorted(order[:2])
    return kx, ky, order[2]


# ------------------------------------------------------------------------------------ fastMRI
def _ismrmrd_facts(xml: str) -> dict[str, Any]:
    """Matrix sizes and FOV from an ISMRMRD XML header (empty if it does not parse)."""
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return {}
    ns = {"m": root.tag.split("}")[0].strip("{")} if root.tag.startswith("{") else {}
    prefix = "m:" if ns else ""
    facts: dict[str, Any] = {}
    for space in ("encodedSpace", "reconSpace"):
        node = root.find(f".//{prefix}encoding/{prefix}{space}", ns)
        if node is None:
            continue
        for part in ("matrixSize", "fieldOfView_mm"):
            sub = node.find(f"{prefix}{part}", ns)
            if sub is not None:
                facts[f"{space}_{part}"] = {child.tag.split("}")[-1]: float(child.text or "nan") for child in sub}
    return facts


def _read_fastmri(path: Path) -> dict[str, xr.Dataset]:
    try:
        handle = h5py.File(path, "r")
    except OSError as exc:
        raise InputError(path, f"not a readable HDF5 file ({exc})") from None
    if "kspace" not in handle or not isinstance(handle["kspace"], h5py.Dataset):
        keys = ", ".join(handle.keys())
        handle.close()
        raise InputError(path, f"no 'kspace' dataset (has: {keys or 'nothing'})")
    kspace = handle["kspace"]
    shape, dtype = kspace.shape, kspace.dtype
    if len(shape) not in (3, 4):
        handle.close()
        raise InputError(path, f"'kspace' must be (slices, coils, ky, kx) or (slices, ky, kx), got {shape}")
    if not np.issubdtype(dtype, np.complexfloating):
        handle.close()
        raise InputError(path, f"'kspace' must be complex, got {dtype}")
    chunks = (1,) + kspace.shape[1:]
    data = da.from_array(kspace, chunks=chunks, asarray=True)
    data = data[:, None] if kspace.ndim == 3 else data
    data = data.transpose(1, 0, 2, 3)
    extra: dict[str, Any] = {}
    for key, value in handle.attrs.items():
        extra[f"h5_{key}"] = value.item() if isinstance(value, np.generic) else (
            value.decode() if isinstance(value, bytes) else value)
    if "ismrmrd_header" in handle:
        raw = handle["ismrmrd_header"][()]
        xml = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
        extra["ismrmrd_header"] = xml
        extra.update(_ismrmrd_facts(xml))
    groups = {"/": _dataset(path, data, "fastmri-h5", [path], extra)}
    for name in ("reconstruction_rss", "reconstruction_esc"):
        if name in handle and handle[name].ndim == 3:
            ref = handle[name]
            image = da.from_array(ref, chunks=(1,) + ref.shape[1:], asarray=True)
            groups["reference"] = xr.Dataset(
                {"image": xr.Variable(("z", "y", "x"), image, attrs={"long_name": name})},
                coords={n: (n, np.arange(s)) for n, s in zip(("z", "y", "x"), ref.shape, strict=True)},
                attrs={"modality": "MR", "source_dataset": name,
                       **provenance_attrs(READER, READER_VERSION, [path])})
            break
    return groups


# ---------------------------------------------------------------------------------------- twix
_KEEP = ("Par", "Sli", "Lin", "Cha", "Col")


def _yaps(hdr: dict, *keys: str, default: Any = None) -> Any:
    node: Any = hdr.get("MeasYaps", {})
    for key in keys:
        if isinstance(node, dict) and key in node:
            node = node[key]
        else:
            return default
    return node


def _twix_facts(scan: dict) -> dict[str, Any]:
    hdr = scan["hdr"]
    slice0 = _yaps(hdr, "sSliceArray", "asSlice", default=[{}])
    slice0 = slice0[0] if isinstance(slice0, list) and slice0 else {}
    facts = {
        "protocol": _yaps(hdr, "tProtocolName"),
        "sequence": _yaps(hdr, "tSequenceFileName"),
        "base_resolution": _yaps(hdr, "sKSpace", "lBaseResolution"),
        "phase_encoding_lines": _yaps(hdr, "sKSpace", "lPhaseEncodingLines"),
        "fov_readout_mm": slice0.get("dReadoutFOV"), "fov_phase_mm": slice0.get("dPhaseFOV"),
        "slice_thickness_mm": slice0.get("dThickness"),
        "tr_ms": [v / 1000.0 for v in _yaps(hdr, "alTR", default=[])][:1],
        "te_ms": [v / 1000.0 for v in _yaps(hdr, "alTE", default=[])],
        "flip_angle_deg": _yaps(hdr, "adFlipAngleDegree", default=[None])[0],
        "field_strength_T": _yaps(hdr, "sProtConsistencyInfo", "flNominalB0"),
    }
    contrasts = _yaps(hdr, "lContrasts", default=1)
    if facts["te_ms"] and isinstance(contrasts, int):
        facts["te_ms"] = facts["te_ms"][:contrasts]
    return {k: v for k, v in facts.items() if v not in (None, [], "")}


#: Largest |sample| accepted in twix ADC data. Real raw data sit many orders of magnitude below
#: (the shipped phantom peaks at 1e-3; 16-bit ADCs scaled to float32 stay below ~1e6); random
#: bytes read as float32 exceed it about one value in three, so a corrupt payload is caught.
TWIX_MAX_ABS = 1e12


def _twix_slab(image: Any, index: tuple, path: Path | None = None, z: int = 0) -> np.ndarray:
    """Read one (Lin, Cha, Col) slab for a fixed (Par, Sli) and return it as (coil, 1, ky, kx).

    A slab that cannot be read (a file truncated mid-data) or holds non-finite or absurd
    (> :data:`TWIX_MAX_ABS`) samples (corrupt payload bytes) is an :class:`InputError` naming the
    file: the header checks cannot see either.
    """
    try:
        with np.errstate(invalid="ignore", over="ignore"):  # corrupt samples are counted below, not warned about
            block = np.asarray(image[index])  # (Lin, Cha, Col) after integer indexing of the other dims
    except Exception as exc:  # twixtools reads past the end of a truncated file with numpy errors
        raise InputError(path, f"twix data of z={z} cannot be read (truncated or corrupt file: "
                               f"{type(exc).__name__}: {exc})") from None
    slab = np.ascontiguousarray(block.transpose(1, 0, 2))[:, None].astype(np.complex64)
    with np.errstate(over="ignore", invalid="ignore"):
        magnitude = np.abs(slab)
    finite = np.isfinite(magnitude)
    bad, absurd = int(slab.size - np.count_nonzero(finite)), int(np.count_nonzero(magnitude[finite] > TWIX_MAX_ABS))
    if bad or absurd:
        raise InputError(path, f"twix data of z={z} hold {bad} non-finite and {absurd} absurd (|k| > "
                               f"{TWIX_MAX_ABS:.0e}) samples of {slab.size}: the file is corrupt")
    return slab


def _read_twix(path: Path) -> dict[str, xr.Dataset]:
    import twixtools

    try:
        scans = twixtools.read_twix(str(path), parse_pmu=False, verbose=False)
        mapped = twixtools.map_twix(scans[-1])
    except Exception as exc:  # twixtools raises bare Exceptions/asserts for malformed files
        raise InputError(path, f"not a readable Siemens twix file ({type(exc).__name__}: {exc})") from None
    if "image" not in mapped:
        raise InputError(path, f"no image scan in the last measurement (has: {', '.join(mapped)})")
    if not any(m.is_flag_set("LASTSCANINMEAS") for m in scans[-1]["mdb"]):
        # twixtools stops quietly at the end of a truncated file; the scanner flags the last scan
        raise InputError(path, "twixtools stopped before the scan flagged LASTSCANINMEAS: the file is truncated "
                               "or its scan headers are corrupt (or the acquisition was aborted)")
    image = mapped["image"]
    image.flags["remove_os"] = False
    dims = list(image.dims)
    shape = dict(zip(dims, image.shape, strict=True))
    extra_dims = [d for d in dims if d not in _KEEP and shape[d] > 1]
    if extra_dims:
        raise InputError(path, "unsupported non-singleton twix dims " + ", ".join(f"{d}={shape[d]}" for d in extra_dims)
                               + " (only slices/partitions, lines, coils, columns are read)")
    if shape["Par"] > 1 and shape["Sli"] > 1:
        raise InputError(path, f"both partitions ({shape['Par']}) and slices ({shape['Sli']}): multi-slab 3D "
                               "is not supported")
    z_dim = "Par" if shape["Par"] > 1 else "Sli"
    ncoil, nky, nkx = shape["Cha"], shape["Lin"], shape["Col"]

    def index_for(z: int) -> tuple:
        return tuple(z if d == z_dim else (0 if d not in ("Lin", "Cha", "Col") else slice(None)) for d in dims)

    slabs = [da.from_delayed(dask.delayed(_twix_slab)(image, index_for(z), path, z), shape=(ncoil, 1, nky, nkx),
                             dtype=np.complex64) for z in range(shape[z_dim])]
    data = da.concatenate(slabs, axis=1)
    scan = scans[-1]
    first = next((m for m in scan["mdb"] if m.is_image_scan()), None)
    extra = {"twix": _twix_facts(scan), "z_encoding": "partition (kz, Fourier-encoded)" if z_dim == "Par" else "slice",
             "measurements_in_file": len(scans)}
    base = extra["twix"].get("base_resolution")
    if base:
        extra["readout_oversampling"] = nkx / float(base)
    if first is not None:
        extra["kspace_centre"] = {"ky": int(first.mdh.CenterLin), "kx": int(first.mdh.CenterCol)}
    return {"/": _dataset(path, data, "siemens-twix", [path], extra)}


_BY_SUFFIX: dict[str, Callable[[list[Path]], dict[str, xr.Dataset]]] = {
    ".npy": lambda paths: _read_npy(paths[0]),
    ".cfl": _read_bart,
    ".hdr": _read_bart,
    ".h5": lambda paths: _read_fastmri(paths[0]),
    ".hdf5": lambda paths: _read_fastmri(paths[0]),
    ".dat": lambda paths: _read_twix(paths[0]),
}


def read(paths: list[Path], **options: Any) -> dict[str, xr.Dataset]:
    """Read one raw k-space source lazily (see the module docstring for formats and dims).

    ``paths`` is one file, or the two halves of a BART pair. Options (``series=`` from the ingest
    dispatcher, ...) are accepted and ignored.
    """
    paths = [Path(p) for p in paths]
    suffixes = {p.suffix.lower() for p in paths}
    if suffixes <= {".cfl", ".hdr"}:
        return _read_bart(paths)
    if len(paths) != 1:
        raise InputError(paths[0], f"the k-space reader takes one file (or one BART pair), got {len(paths)}")
    reader = _BY_SUFFIX.get(paths[0].suffix.lower())
    if reader is None:
        raise InputError(paths[0], f"unknown k-space format {paths[0].suffix!r} (.dat, .cfl/.hdr, .h5, .npy)")
    return reader(paths)
