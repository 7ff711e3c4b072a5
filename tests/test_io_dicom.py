"""DICOM reader: real pixel data (head CT, pydicom test files), real series written with pydicom,
ingested through the pipeline into a Zarr store and compared exactly with what was written."""

from __future__ import annotations

import random
from pathlib import Path

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
