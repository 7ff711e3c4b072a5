"""DICOM reader: real pixel data (head CT, pydicom test files), real series written with pydicom,
ingested through the pipeline into a Zarr store and compared exactly with what was written."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, EnhancedCTImageStorage, ExplicitVRLittleEndian, generate_uid

from scorerecon.modalities.io import dicom
from scorerecon.modalities.io.store import open_store
from scorerecon.pipelines.cli import main
from scorerecon.pipelines.errors import InputError
from scorerecon.pipelines.ingest import ingest

DATA = (Path(__file__).parents[1] / ".." / "shared" / "data").resolve()
HEAD_CT = DATA / "ct" / "head_ct_hu.nii.gz"


def head_ct_slices(n: int = 6, start: int = 50) -> np.ndarray:
    """``n`` real head-CT slices in HU as (z, y, x) int16 (skips the test if the data is absent)."""
    if not HEAD_CT.exists():
        pytest.skip(f"shared data not available: {HEAD_CT}")
    img = nib.load(HEAD_CT)
    return np.asarray(img.dataobj[:, :, start:start + n]).transpose(2, 1, 0).astype(np.int16)


def lps_affine(row: np.ndarray, col: np.ndarray, spacing: tuple[float, float, float], origin: np.ndarray) -> np.ndarray:
    """Reference LPS affine of an evenly spaced series: columns row*sx, col*sy, normal*sz, origin."""
    aff = np.eye(4)
    aff[:3, 0] = row * spacing[0]
    aff[:3, 1] = col * spacing[1]
    aff[:3, 2] = np.cross(row, col) * spacing[2]
    aff[:3, 3] = origin
    return aff


def _base_dataset(rows: int, cols: int, series_uid: str, study_uid: str, sop_class: str) -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.PatientName = "Test^Head"
    ds.PatientID = "SR-0001"
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "O"
    ds.StudyInstanceUID = study_uid
    ds.StudyID = "1"
    ds.StudyDate = "20240101"
    ds.StudyTime = "120000"
    ds.AccessionNumber = "A1"
    ds.ReferringPhysicianName = ""
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = 3
    ds.SeriesDescription = "head ct test"
    ds.Modality = "CT"
    ds.FrameOfReferenceUID = "1.2.826.0.1.3680043.8.498.1"
    ds.PositionReferenceIndicator = ""
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.WindowCenter = 40
    ds.WindowWidth = 400
    return ds


def write_series(folder: Path, hu: np.ndarray, *, spacing: tuple[float, float, float] = (0.5, 0.6, 1.5),
                 origin: tuple[float, float, float] = (-60.0, -70.0, 20.0),
                 row: tuple[float, float, float] = (1.0, 0.0, 0.0), col: tuple[float, float, float] = (0.0, 1.0, 0.0),
                 slope: float = 1.0, intercept: float = -1024.0, series_uid: str | None = None,
                 positions: list[np.ndarray] | None = None, prefix: str = "img", seed: int = 0) -> dict:
    """Write ``hu`` (z, y, x) as a single-frame CT series, files named in shuffled order.

    Stored value = (HU - intercept) / slope, unsigned (12-bit; 16-bit when slope != 1). Returns what was written.
    """
    folder.mkdir(parents=True, exist_ok=True)
    rowv, colv = np.asarray(row, float), np.asarray(col, float)
    normal = np.cross(rowv, colv)
    if positions is None:
        positions = [np.asarray(origin) + k * spacing[2] * normal for k in range(hu.shape[0])]
    series_uid = series_uid or generate_uid()
    study_uid = generate_uid()
    names = [f"{prefix}{i:03d}.dcm" for i in range(hu.shape[0])]
    random.Random(seed).shuffle(names)
    files = []
    for k, plane in enumerate(hu):
        stored = np.round((plane.astype(np.float64) - intercept) / slope)
        assert stored.min() >= 0 and stored.max() < 65536
        ds = _base_dataset(plane.shape[0], plane.shape[1], series_uid, study_uid, CTImageStorage)
        if slope != 1.0:
            ds.BitsStored, ds.HighBit = 16, 15
        ds.InstanceNumber = k + 1
        ds.ImageOrientationPatient = [f"{v:.6f}" for v in (*rowv, *colv)]
        ds.ImagePositionPatient = [f"{v:.6f}" for v in positions[k]]
        ds.PixelSpacing = [spacing[1], spacing[0]]  # row spacing (y), column spacing (x)
        ds.SliceThickness = spacing[2]
        ds.RescaleSlope = slope
        ds.RescaleIntercept = intercept
        ds.RescaleType = "HU"
        ds.PixelData = stored.astype(np.uint16).tobytes()
        path = folder / names[k]
        ds.save_as(path, enforce_file_format=True)
        files.append(path)
    return {"files": files, "series_uid": series_uid, "row": rowv, "col": colv, "origin": np.asarray(positions[0]),
            "spacing": spacing}


def test_series_roundtrip_through_ingest_is_exact(tmp_path: Path) -> None:
    hu = head_ct_slices(6)
    written = write_series(tmp_path / "series", hu)
    out = ingest([tmp_path / "series"], tmp_path / "ct.zarr", progress=False)
    ds = open_store(out)
    image = ds["image"]
    assert image.dims == ("z", "y", "x")
    assert image.dtype == np.int16  # integral rescale -> exact HU in int16 (12-bit stored range fits)
    np.testing.assert_array_equal(image.values, hu)
    assert image.chunks == ((6,), (hu.shape[1],), (hu.shape[2],))  # one slab: 6 slices < CHUNK_BYTES
    # axial: RAS affine is diag(-sx, -sy, sz) with the LPS origin's first two signs flipped
    expected = np.array([[-0.5, 0, 0, 60.0], [0, -0.6, 0, 70.0], [0, 0, 1.5, 20.0], [0, 0, 0, 1]])
    np.testing.assert_allclose(np.array(ds.attrs["affine"]), expected, atol=1e-6)
    np.testing.assert_allclose(ds.attrs["spacing"], [0.5, 0.6, 1.5], atol=1e-9)
    np.testing.assert_allclose(ds["z"].values, np.arange(6) * 1.5)
    np.testing.assert_allclose(ds["x"].values, np.arange(hu.shape[2]) * 0.5)
    assert ds.attrs["modality"] == "CT"
    assert ds.attrs["orientation"] == "LPS"
    tags = ds.attrs["dicom"]
    assert tags["SeriesInstanceUID"] == written["series_uid"]
    assert tags["PatientID"] == "SR-0001" and tags["PatientName"] == "Test^Head"
    assert tags["FrameOfReferenceUID"] == "1.2.826.0.1.3680043.8.498.1"
    assert tags["InstanceNumber"] == [1, 2, 3, 4, 5, 6]  # sorted along the normal despite shuffled names
    by_instance = {pydicom.dcmread(f).InstanceNumber: str(pydicom.dcmread(f).SOPInstanceUID) for f in written["files"]}
    assert tags["SOPInstanceUID"] == [by_instance[i] for i in range(1, 7)]
    assert tags["SOPClassUID"] == [str(CTImageStorage)] * 6
    np.testing.assert_allclose(tags["ImagePositionPatient"][-1], [-60.0, -70.0, 20.0 + 5 * 1.5], atol=1e-6)
    assert tags["RescaleSlope"] == 1.0 and tags["RescaleIntercept"] == -1024.0
    assert tags["BitsStored"] == 12 and tags["PixelRepresentation"] == 0
    assert len(ds.attrs["source_files"]) == 6


def test_oblique_series_affine_and_float_rescale(tmp_path: Path) -> None:
    hu = head_ct_slices(5, start=40)
    b = np.deg2rad(17.0)
    row, col = (np.cos(b), np.sin(b), 0.0), (0.0, np.cos(0.3), -np.sin(0.3))
    # make col orthogonal to row exactly
    rowv = np.asarray(row)
    colv = np.asarray(col) - np.dot(col, rowv) * rowv
    colv /= np.linalg.norm(colv)
    written = write_series(tmp_path / "obl", hu, row=tuple(rowv), col=tuple(colv), slope=0.5, intercept=-1024.0,
                           spacing=(0.8, 0.7, 2.0), origin=(10.0, -20.0, 30.0))
    out = ingest([tmp_path / "obl"], tmp_path / "obl.zarr")
    ds = open_store(out)
    assert ds["image"].dtype == np.float32  # non-integral slope -> float32
    np.testing.assert_array_equal(ds["image"].values, hu.astype(np.float32))
    # IOP is written with 6 decimals: compare against the values actually in the files
    first = pydicom.dcmread(written["files"][0])
    iop = np.array([float(v) for v in first.ImageOrientationPatient])
    origin = min((np.array([float(v) for v in pydicom.dcmread(f).ImagePositionPatient]) for f in written["files"]),
                 key=lambda p: float(np.dot(p, np.cross(iop[:3], iop[3:]))))
    ras = np.diag([-1.0, -1, 1, 1]) @ lps_affine(iop[:3], iop[3:], (0.8, 0.7, 2.0), origin)
    np.testing.assert_allclose(np.array(ds.attrs["affine"]), ras, atol=1e-5)


def test_enhanced_multiframe_file_sorted_by_position(tmp_path: Path) -> None:
    hu = head_ct_slices(4, start=60)
    ds = _base_dataset(hu.shape[1], hu.shape[2], generate_uid(), generate_uid(), EnhancedCTImageStorage)
    ds.NumberOfFrames = 4
    shared = Dataset()
    shared.PixelMeasuresSequence = [Dataset()]
    shared.PixelMeasuresSequence[0].PixelSpacing = [0.9, 0.8]
    shared.PixelMeasuresSequence[0].SliceThickness = 3.0
    shared.PlaneOrientationSequence = [Dataset()]
    shared.PlaneOrientationSequence[0].ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    shared.PixelValueTransformationSequence = [Dataset()]
    shared.PixelValueTransformationSequence[0].RescaleSlope = 1
    shared.PixelValueTransformationSequence[0].RescaleIntercept = -1024
    ds.SharedFunctionalGroupsSequence = [shared]
    order = [2, 0, 3, 1]  # frame f holds slice order[f]
    per_frame = []
    for f in range(4):
        item = Dataset()
        item.PlanePositionSequence = [Dataset()]
        item.PlanePositionSequence[0].ImagePositionPatient = [5.0, 6.0, 100.0 + 3.0 * order[f]]
        per_frame.append(item)
    ds.PerFrameFunctionalGroupsSequence = per_frame
    ds.PixelData = np.stack([hu[k] + 1024 for k in order]).astype(np.uint16).tobytes()
    path = tmp_path / "enhanced.dcm"
    ds.save_as(path, enforce_file_format=True)
    out = dicom.read([path])["/"]
    np.testing.assert_array_equal(out["image"].values, hu)
    assert out["image"].chunks[0] == (4,)
    assert out.attrs["dicom"]["FrameIndex"] == [1, 3, 0, 2]
    np.testing.assert_allclose(out.attrs["affine"], [[-0.8, 0, 0, -5], [0, -0.9, 0, -6], [0, 0, 3, 100], [0, 0, 0, 1]],
                               atol=1e-9)


def test_two_series_need_series_option(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    hu = head_ct_slices(6)
    a = write_series(tmp_path / "mixed", hu[:3], prefix="a")
    b = write_series(tmp_path / "mixed", hu[3:], prefix="b", origin=(0.0, 0.0, 0.0))
    with pytest.raises(InputError) as err:
        dicom.read([tmp_path / "mixed"])
    assert a["series_uid"] in str(err.value) and b["series_uid"] in str(err.value) and "--series" in str(err.value)
    assert main(["ingest", str(tmp_path / "mixed"), "-o", str(tmp_path / "b.zarr"), "--series", b["series_uid"],
                 "-q"]) == 0
    capsys.readouterr()
    ds = open_store(tmp_path / "b.zarr")
    np.testing.assert_array_equal(ds["image"].values, hu[3:])
    assert ds.attrs["dicom"]["SeriesInstanceUID"] == b["series_uid"]


def test_read_is_lazy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hu = head_ct_slices(3)
    written = write_series(tmp_path / "lazy", hu)
    monkeypatch.setattr(dicom, "CHUNK_BYTES", 1)  # one slice per chunk
    ds = dicom.read([tmp_path / "lazy"], series=None, unknown_option=42)["/"]
    assert ds["image"].chunks == ((1, 1, 1), (hu.shape[1],), (hu.shape[2],))
    # remove one slice's file *after* read(): only computing that chunk notices, as an InputError
    victim = written["files"][0]
    k = ds.attrs["dicom"]["SOPInstanceUID"].index(str(pydicom.dcmread(victim).SOPInstanceUID))
    victim.unlink()
    ok = [i for i in range(3) if i != k]
    np.testing.assert_array_equal(ds["image"][ok].values, hu[ok])
    with pytest.raises(InputError, match=victim.name):
        ds["image"][k].values  # noqa: B018


@pytest.mark.parametrize("name,modality,shape", [
    ("CT_small.dcm", "CT", (1, 128, 128)),
    ("MR_small.dcm", "MR", (1, 64, 64)),
    ("693_J2KI.dcm", "CT", (1, 512, 512)),
    ("emri_small.dcm", "MR", (10, 64, 64)),
])
def test_pydicom_bundled_files(name: str, modality: str, shape: tuple[int, ...]) -> None:
    path = get_testdata_file(name)
    if path is None:
        pytest.skip(f"{name} not installed (pydicom-data)")
    ds = dicom.read([Path(path)])["/"]
    assert ds["image"].shape == shape
    assert ds.attrs["modality"] == modality
    ref = pydicom.dcmread(path)
    stored = ref.pixel_array.reshape(shape)
    slope, intercept = float(ref.get("RescaleSlope", 1)), float(ref.get("RescaleIntercept", 0))
    np.testing.assert_array_equal(ds["image"].values, stored.astype(np.int64) * int(slope) + int(intercept))


def test_jpeg2000_decodes_same_as_uncompressed() -> None:
    j2k, unc = get_testdata_file("693_J2KI.dcm"), get_testdata_file("693_UNCI.dcm")
    if unc is None:
        pytest.skip("693_UNCI.dcm needs pydicom-data")
    a = dicom.read([Path(j2k)])["/"]
    b = dicom.read([Path(unc)])["/"]
    np.testing.assert_array_equal(a["image"].values, b["image"].values)
    np.testing.assert_allclose(a.attrs["affine"], b.attrs["affine"])
    assert a["image"].dtype == np.int16  # 14-bit signed + intercept -1024 fits int16


def test_non_integral_slope_mr_is_float32() -> None:
    path = get_testdata_file("MR2_UNCI.dcm")
    if path is None:
        pytest.skip("MR2_UNCI.dcm needs pydicom-data")
    ds = dicom.read([Path(path)])["/"]
    ref = pydicom.dcmread(path)
    assert ds["image"].dtype == np.float32
    expected = (ref.pixel_array * float(ref.RescaleSlope) + float(ref.RescaleIntercept)).astype(np.float32)
    np.testing.assert_array_equal(ds["image"].values[0], expected)
    # sagittal-ish orientation: affine columns are the IOP directions (LPS->RAS), scaled by spacing
    iop = np.array([float(v) for v in ref.ImageOrientationPatient])
    aff = np.array(ds.attrs["affine"])
    np.testing.assert_allclose(aff[:3, 0], np.array([-1, -1, 1]) * iop[:3] * float(ref.PixelSpacing[1]), atol=1e-9)
    np.testing.assert_allclose(aff[:3, 1], np.array([-1, -1, 1]) * iop[3:] * float(ref.PixelSpacing[0]), atol=1e-9)
    assert ds.attrs["spacing"][2] == float(ref.SliceThickness)  # single slice: SliceThickness


def test_slabs_of_several_slices_and_streamed_sha256(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Slabs of 2 slices (last one short); every file's sha256 comes from the bytes the slabs read."""
    from scorerecon.modalities.io import digests
    from scorerecon.modalities.io.store import sha256_file

    hu = head_ct_slices(5)
    written = write_series(tmp_path / "series", hu)
    monkeypatch.setattr(dicom, "CHUNK_BYTES", 2 * hu.shape[1] * hu.shape[2] * 2)
    seen: list[int] = []
    original = digests.StreamedDigest.hexdigest

    def spy(self: digests.StreamedDigest) -> str:
        seen.append(self.hashed_bytes - self.size)  # 0 when the slab reads already hashed the whole file
        return original(self)

    monkeypatch.setattr(digests.StreamedDigest, "hexdigest", spy)
    out = ingest([tmp_path / "series"], tmp_path / "ct.zarr", progress=False)
    ds = open_store(out)
    assert ds["image"].chunks[0] == (2, 2, 1)
    np.testing.assert_array_equal(ds["image"].values, hu)
    recorded = {Path(r["path"]).name: r["sha256"] for r in ds.attrs["source_files"]}
    assert recorded == {p.name: sha256_file(p) for p in written["files"]}
    assert seen and set(seen) == {0}


def test_native_pixel_fast_path_matches_pydicom_on_real_files() -> None:
    """Uncompressed files decoded from their bytes equal pydicom's decode (unused high bits included)."""
    checked = 0
    for name in ("CT_small.dcm", "MR_small.dcm", "693_UNCI.dcm", "explicit_VR-UN.dcm", "MR2_UNCI.dcm"):
        path = get_testdata_file(name)
        if path is None:
            continue
        header = pydicom.dcmread(path, defer_size="64 KB")
        s = dicom._make_slice(Path(path), header, None)
        if s.pixel_offset is None:
            continue
        stored = dicom._stored_dtype(header)
        fast = dicom._native_pixels(s, Path(path).read_bytes(), stored, int(header.BitsStored))
        np.testing.assert_array_equal(fast, pydicom.dcmread(path).pixel_array.astype(stored))
        checked += 1
    assert checked >= 2


# ------------------------------------------------------------------ enhanced MR: stacks x acquisitions
COLIN27 = Path(__file__).parents[1] / "data" / "demo" / "colin27_t1.nii.gz"
#: (StackID, FrameAcquisitionNumber, contrast) of the multi-stack file: three axial acquisitions
#: (T2-like, T1, T1 post-contrast-like) and one coronal (post-contrast), three frames each.
MULTISTACK = (("1", 1, "t2"), ("1", 2, "t1"), ("1", 3, "t1c"), ("2", 4, "t1c"))


def _contrast(vol: np.ndarray, kind: str) -> np.ndarray:
    """Three contrasts from one real T1 volume (uint8): T1 as is, an inverted 'T2', a brightened 'T1c'."""
    vol = vol.astype(np.int32)
    return {"t1": vol, "t2": 255 - vol, "t1c": np.minimum(vol + 40, 300)}[kind].astype(np.uint16)


def write_multistack_mr(path: Path, bad_frame: int | None = None, seed: int = 0) -> dict:
    """An Enhanced MR file of 12 frames = 2 stacks x 4 acquisitions in one series, from the real Colin27 T1.

    Stack 1 is axial (3 slices, 4 mm apart) acquired three times (StackID 1, FrameAcquisitionNumber
    1-3); stack 2 is coronal (3 slices, 4 mm apart, FrameAcquisitionNumber 4). Frames are stored in
    shuffled order, each with its own PlanePosition/PlaneOrientation, and a DimensionIndexSequence
    (StackID, InStackPositionNumber, FrameAcquisitionNumber) as scanners write it. ``bad_frame``
    (0-based) gets an orientation tilted by ~0.6 degrees. Returns the volume, its RAS affine and the
    frame order.
    """
    from pydicom.datadict import tag_for_keyword
    from pydicom.uid import EnhancedMRImageStorage

    if not COLIN27.exists():
        pytest.skip(f"demo data not available: {COLIN27}")
    img = nib.load(COLIN27)
    vol, ras = np.asarray(img.dataobj), img.affine
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ ras
    unit = [lps[:3, a] / np.linalg.norm(lps[:3, a]) for a in range(3)]
    i0, j0, k0, n = 58, 80, 60, 48
    frames = []  # (stack, acquisition, position in stack, pixels, orientation, position)
    for stack, acq, kind in MULTISTACK:
        con = _contrast(vol, kind)
        for pos in range(3):
            if stack == "1":  # axial: rows along j, columns along i
                k = k0 + 4 * pos
                pixels, orient, ipp = con[i0:i0 + n, j0:j0 + n, k].T, (*unit[0], *unit[1]), lps @ [i0, j0, k, 1]
            else:  # coronal: rows along k, columns along i
                j = j0 + 10 + 4 * pos
                pixels, orient, ipp = con[i0:i0 + n, j, k0:k0 + n].T, (*unit[0], *unit[2]), lps @ [i0, j, k0, 1]
            frames.append((stack, acq, pos + 1, np.ascontiguousarray(pixels), np.array(orient), ipp[:3]))
    order = list(range(len(frames)))
    random.Random(seed).shuffle(order)
    frames = [frames[f] for f in order]

    ds = _base_dataset(n, n, generate_uid(), generate_uid(), EnhancedMRImageStorage)
    ds.Modality, ds.SeriesDescription, ds.ImageType = "MR", "brain T2 T1 T1+C ax, T1+C cor", ["ORIGINAL", "PRIMARY"]
    ds.BitsStored, ds.HighBit, ds.NumberOfFrames = 16, 15, len(frames)
    del ds.WindowCenter, ds.WindowWidth
    organisation = generate_uid()
    ds.DimensionOrganizationSequence = [Dataset()]
    ds.DimensionOrganizationSequence[0].DimensionOrganizationUID = organisation
    ds.DimensionIndexSequence = []
    for keyword, label in (("StackID", "Stack ID"), ("InStackPositionNumber", "In-Stack Position Number"),
                           ("FrameAcquisitionNumber", "Frame Acquisition Number")):
        item = Dataset()
        item.DimensionOrganizationUID = organisation
        item.DimensionIndexPointer = tag_for_keyword(keyword)
        item.FunctionalGroupPointer = tag_for_keyword("FrameContentSequence")
        item.DimensionDescriptionLabel = label
        ds.DimensionIndexSequence.append(item)
    shared = Dataset()
    shared.PixelMeasuresSequence = [Dataset()]
    shared.PixelMeasuresSequence[0].PixelSpacing = [1.0, 1.0]
    shared.PixelMeasuresSequence[0].SliceThickness = 1.0
    ds.SharedFunctionalGroupsSequence = [shared]
    per_frame = []
    for f, (stack, acq, pos, _, orient, ipp) in enumerate(frames):
        item = Dataset()
        content = Dataset()
        content.StackID, content.InStackPositionNumber, content.FrameAcquisitionNumber = stack, pos, acq
        content.DimensionIndexValues = [int(stack), pos, acq]
        item.FrameContentSequence = [content]
        if f == bad_frame:
            orient = orient + np.array([0, 0.01, 0, 0, 0, 0])
        item.PlaneOrientationSequence = [Dataset()]
        item.PlaneOrientationSequence[0].ImageOrientationPatient = [f"{v:.6f}" for v in orient]
        item.PlanePositionSequence = [Dataset()]
        item.PlanePositionSequence[0].ImagePositionPatient = [f"{v:.6f}" for v in ipp]
        per_frame.append(item)
    ds.PerFrameFunctionalGroupsSequence = per_frame
    ds.PixelData = np.stack([f[3] for f in frames]).astype("<u2").tobytes()
    ds.save_as(path, enforce_file_format=True)
    return {"vol": vol, "ras": ras, "frames": frames}


def _check_against_volume(out: Any, written: dict, kind: str) -> None:
    """Every voxel of a read volume, mapped through its affine, lands on the source voxel with the same value."""
    image = out["image"].values
    nz, ny, nx = image.shape
    z, y, x = np.meshgrid(np.arange(nz), np.arange(ny), np.arange(nx), indexing="ij")
    world = np.asarray(out.attrs["affine"]) @ np.stack([x.ravel(), y.ravel(), z.ravel(), np.ones(x.size)])
    ijk = np.linalg.solve(written["ras"], world)[:3]
    np.testing.assert_allclose(ijk, np.round(ijk), atol=1e-4)
    i, j, k = np.round(ijk).astype(int)
    np.testing.assert_array_equal(image.ravel(), _contrast(written["vol"], kind)[i, j, k])


def test_enhanced_mr_two_stacks_four_acquisitions_ingest_as_four_volumes(tmp_path: Path) -> None:
    from scorerecon.modalities.io.store import store_groups

    src = tmp_path / "enhanced_mr.dcm"
    written = write_multistack_mr(src)
    groups = dicom.read([src])
    assert list(groups) == ["stack1_acq1", "stack1_acq2", "stack1_acq3", "stack2_acq4"]
    for (stack, acq, kind), (name, ds) in zip(MULTISTACK, groups.items(), strict=True):
        assert ds["image"].shape == (3, 48, 48), name
        assert ds.attrs["frame_group"] == {"StackID": stack, "FrameAcquisitionNumber": str(acq), "frames": 3}
        assert ds.attrs["orientation"] == ("RAS" if stack == "1" else "RSP"), name
        assert ds.attrs["spacing"] == pytest.approx([1.0, 1.0, 4.0])
        _check_against_volume(ds, written, kind)
    # through the CLI: one store, one group per volume, the source hashed once for all
    assert main(["ingest", str(src), "-o", str(tmp_path / "all.zarr"), "-q"]) == 0
    assert store_groups(tmp_path / "all.zarr") == list(groups)
    coronal = open_store(tmp_path / "all.zarr", "stack2_acq4")
    np.testing.assert_array_equal(coronal["image"].values, groups["stack2_acq4"]["image"].values)
    assert coronal.attrs["source_files"][0]["sha256"] == open_store(tmp_path / "all.zarr", "stack1_acq1").attrs[
        "source_files"][0]["sha256"]


def test_enhanced_mr_stack_and_acquisition_options_pick_one_volume(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "enhanced_mr.dcm"
    written = write_multistack_mr(src, seed=3)
    assert main(["ingest", str(src), "-o", str(tmp_path / "cor.zarr"), "--stack", "2", "-q"]) == 0
    _check_against_volume(open_store(tmp_path / "cor.zarr"), written, "t1c")
    assert main(["ingest", str(src), "-o", str(tmp_path / "t2.zarr"), "--stack", "1", "--acquisition", "1",
                 "-q"]) == 0
    t2 = open_store(tmp_path / "t2.zarr")
    assert t2.attrs["frame_group"]["FrameAcquisitionNumber"] == "1"
    _check_against_volume(t2, written, "t2")
    two = dicom.read([src], stack="1", acquisition=None)
    assert list(two) == ["acq1", "acq2", "acq3"]
    capsys.readouterr()
    assert main(["ingest", str(src), "-o", str(tmp_path / "none.zarr"), "--acquisition", "7", "-q"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "FrameAcquisitionNumber 7" in err[0] and "(2, 4)" in err[0]
    assert not (tmp_path / "none.zarr").exists()


def test_enhanced_mr_error_names_the_frame(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "enhanced_mr.dcm"
    written = write_multistack_mr(src, bad_frame=5)
    stack, acq = written["frames"][5][:2]
    first = min(f for f, frame in enumerate(written["frames"]) if frame[:2] == (stack, acq))
    assert first != 5
    with pytest.raises(InputError) as err:
        dicom.read([src], stack=stack, acquisition=acq)
    message = str(err.value)
    assert message.count(src.name) == 1, message  # the file once, then its frames (1-based)
    assert message.startswith(f"{src}: frame 6: inconsistent ImageOrientationPatient")
    assert message.endswith(f"in frame {first + 1}")
    capsys.readouterr()
    assert main(["ingest", str(src), "-o", str(tmp_path / "bad.zarr"), "-q"]) != 0  # every volume is checked
    err_lines = capsys.readouterr().err.strip().splitlines()
    assert len(err_lines) == 1 and "frame 6" in err_lines[0] and "Traceback" not in err_lines[0]
    assert not (tmp_path / "bad.zarr").exists()


def test_acquisition_option_on_single_frame_series_and_stack_refused(tmp_path: Path) -> None:
    hu = head_ct_slices(6)
    a = write_series(tmp_path / "two", hu[:3], prefix="a")
    write_series(tmp_path / "two", hu[3:], prefix="b", series_uid=a["series_uid"])  # same positions, same series
    for path in (tmp_path / "two").glob("b*.dcm"):
        ds = pydicom.dcmread(path)
        ds.AcquisitionNumber = 2
        ds.save_as(path)
    for path in (tmp_path / "two").glob("a*.dcm"):
        ds = pydicom.dcmread(path)
        ds.AcquisitionNumber = 1
        ds.save_as(path)
    with pytest.raises(InputError, match="pick one with --acquisition"):
        dicom.read([tmp_path / "two"])
    np.testing.assert_array_equal(dicom.read([tmp_path / "two"], acquisition=2)["/"]["image"].values, hu[3:])
    with pytest.raises(InputError, match="--stack"):
        dicom.read([tmp_path / "two"], stack="1", acquisition=1)
