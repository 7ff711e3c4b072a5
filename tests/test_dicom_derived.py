"""The DICOM export as a derived series in the source study, de-identification, and NIfTI provenance.

Real sources: pydicom's bundled CT_small.dcm and MR_small.dcm (each with a patient name and ID),
ingested with the project's reader; real validator: ``dciodvfy`` (Debian dicom3tools).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from scorerecon.modalities.io.export import export_store
from scorerecon.pipelines.cli import main
from scorerecon.pipelines.ingest import ingest

needs_dciodvfy = pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dciodvfy (dicom3tools) not installed")


def dciodvfy_errors(path: Path) -> list[str]:
    report = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
    return [line for line in (report.stdout + report.stderr).splitlines() if line.startswith("Error")]


@pytest.fixture(scope="module", params=["CT_small.dcm", "MR_small.dcm"])
def source(request, tmp_path_factory) -> tuple[pydicom.Dataset, Path]:
    path = Path(get_testdata_file(request.param))
    store = ingest([path], tmp_path_factory.mktemp("store") / "src.zarr")
    return pydicom.dcmread(path), store


@needs_dciodvfy
def test_derived_series_lives_in_the_source_study_and_references_its_source(source, tmp_path):
    src, store = source
    out = export_store(store, "dicom", tmp_path / "derived")
    (dcm_path,) = sorted(out.glob("*.dcm"))
    assert dciodvfy_errors(dcm_path) == []
    dcm = pydicom.dcmread(dcm_path)
    assert dcm.StudyInstanceUID == src.StudyInstanceUID
    assert dcm.FrameOfReferenceUID == src.FrameOfReferenceUID
    assert dcm.SeriesInstanceUID != src.SeriesInstanceUID and dcm.SOPInstanceUID != src.SOPInstanceUID
    assert dcm.SOPClassUID == src.SOPClassUID
    assert list(dcm.ImageType)[:2] == ["DERIVED", "SECONDARY"]
    assert "scorerecon" in dcm.DerivationDescription
    (ref,) = dcm.SourceImageSequence
    assert (ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID) == (src.SOPClassUID, src.SOPInstanceUID)
    assert ref.PurposeOfReferenceCodeSequence[0].CodeValue == "121322"
    assert dcm.ReferencedSeriesSequence[0].SeriesInstanceUID == src.SeriesInstanceUID
    (equipment,) = dcm.ContributingEquipmentSequence
    assert equipment.Manufacturer == "scorerecon" and equipment.SoftwareVersions
    assert equipment.PurposeOfReferenceCodeSequence[0].CodeMeaning == "Processing Equipment"
    assert dcm.SoftwareVersions
    # geometry per slice is the source's
    np.testing.assert_allclose([float(v) for v in dcm.ImagePositionPatient],
                               [float(v) for v in src.ImagePositionPatient], atol=1e-4)
    np.testing.assert_allclose([float(v) for v in dcm.ImageOrientationPatient],
                               [float(v) for v in src.ImageOrientationPatient], atol=1e-6)
    np.testing.assert_allclose([float(v) for v in dcm.PixelSpacing], [float(v) for v in src.PixelSpacing], atol=1e-6)
    def values(ds: pydicom.Dataset) -> np.ndarray:
        return ds.pixel_array * float(ds.get("RescaleSlope", 1)) + float(ds.get("RescaleIntercept", 0))

    np.testing.assert_array_equal(values(dcm), values(src))


@needs_dciodvfy
def test_deidentified_export_follows_the_basic_profile(source, tmp_path):
    src, store = source
    assert main(["export", str(store), "--format", "dicom", "--deidentify", "-o", str(tmp_path / "deid")]) == 0
    (dcm_path,) = sorted((tmp_path / "deid").glob("*.dcm"))
    assert dciodvfy_errors(dcm_path) == []
    raw = dcm_path.read_bytes()
    for identifier in (str(src.PatientName), str(src.PatientID), src.StudyInstanceUID, src.SOPInstanceUID):
        assert identifier.encode() not in raw, identifier
    dcm = pydicom.dcmread(dcm_path)
    assert dcm.PatientIdentityRemoved == "YES"
    assert dcm.DeidentificationMethodCodeSequence[0].CodeValue == "113100"
    assert not any(elem.tag.is_private for elem in dcm)
    assert [i.PurposeOfReferenceCodeSequence[0].CodeValue for i in dcm.ContributingEquipmentSequence] == [
        "109102", "109104"]
    assert dcm.SourceImageSequence[0].ReferencedSOPInstanceUID != src.SOPInstanceUID
    assert dcm.pixel_array.shape == src.pixel_array.shape


def test_nifti_export_carries_json_extension_and_bids_sidecar(source, tmp_path):
    _, store = source
    out = export_store(store, "nifti", tmp_path / "vol.nii.gz")
    (extension,) = nib.load(out).header.extensions
    record = extension.json()
    assert record["exported_by"].startswith("scorerecon") and record["source_files"][0]["sha256"]
    bids = json.loads((tmp_path / "vol.json").read_text())
    assert bids["GeneratedBy"][0]["Name"] == "scorerecon"
    assert any(s.endswith(Path(record["source_files"][0]["path"]).name) for s in bids["Sources"])
    assert list(bids["SourceSHA256"].values()) == [record["source_files"][0]["sha256"]]
