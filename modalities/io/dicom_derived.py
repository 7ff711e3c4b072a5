"""What makes an exported DICOM series a *derived series in the source study*, and de-identification.

:func:`scorerecon.modalities.io.export.export_dicom` builds each slice (pixels, geometry, SOP
class, patient/study tags kept from ``attrs["dicom"]``); it calls into this module for the parts
that tie the new series to the instances it was computed from:

* :func:`select_slices` keeps the per-slice records of the slices a reconstruction kept;
* :func:`source_references` maps every output slice to the source instance(s) it derives from
  (one to one when the slice count is unchanged, else the source slice nearest in patient
  space), from the per-slice SOPInstanceUID / SOPClassUID / ImagePositionPatient lists the DICOM
  reader keeps in ``attrs["dicom"]``;
* :func:`add_derivation` writes the General Image module's ``SourceImageSequence`` (purpose of
  reference DCM 121322 "Source image for image processing operation"), the Common Instance
  Reference module's ``ReferencedSeriesSequence`` (the source series in the same study) and the
  General Equipment module's ``ContributingEquipmentSequence`` (scorerecon as DCM 109102
  "Processing Equipment", with its version and the time of the export);
* :func:`deidentify` applies the DICOM PS3.15 Annex E *Basic Application Level Confidentiality
  Profile* through the ``dicom-anonymizer`` package (its action table is generated from the
  standard's Table E.1-1: remove / empty / dummy / replace-UID per attribute, private tags
  removed), then records what was done: PatientIdentityRemoved ``YES``,
  DeidentificationMethod and DeidentificationMethodCodeSequence (DCM 113100), and a second
  contributing-equipment item (DCM 109104 "De-identifying Equipment"). UIDs are replaced
  consistently within one process, so every slice of one export still shares one (new) study,
  series and frame of reference.

Why not highdicom: it has no constructor for single-frame CT / MR Image Storage instances with
new pixel data (its SC image drops the patient geometry, the enhanced/legacy classes need the
source datasets themselves), so the series is built with pydicom in ``export.py`` and only these
reference sequences are added here, by hand, from the standard's module tables.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import Any

import numpy as np
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence

from scorerecon import __version__

#: (CodeValue, CodingSchemeDesignator, CodeMeaning) from PS3.16
SOURCE_IMAGE_PURPOSE = ("121322", "DCM", "Source image for image processing operation")
PROCESSING_EQUIPMENT = ("109102", "DCM", "Processing Equipment")
DEIDENTIFYING_EQUIPMENT = ("109104", "DCM", "De-identifying Equipment")
BASIC_PROFILE = ("113100", "DCM", "Basic Application Confidentiality Profile")


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return item


def source_references(source: dict[str, Any], positions_lps: Sequence[Sequence[float]]
                      ) -> list[list[tuple[str, str]]]:
    """For each output slice, the ``(SOPClassUID, SOPInstanceUID)`` of the source slice(s) it derives from.

    ``source`` is the store's ``attrs["dicom"]``; ``positions_lps`` the ImagePositionPatient of
    each output slice. Same slice count: slice ``k`` derives from source slice ``k`` (both are in
    ascending order along the normal). Otherwise the source slice whose position is nearest.
    Empty lists when the store did not come from DICOM (nothing to reference).
    """
    uids = source.get("SOPInstanceUID") or []
    classes = source.get("SOPClassUID") or []
    if not isinstance(uids, list) or not uids or any(not u for u in uids):
        return [[] for _ in positions_lps]
    classes = classes if isinstance(classes, list) and len(classes) == len(uids) else [classes] * len(uids)
    pairs = [(str(c), str(u)) for c, u in zip(classes, uids, strict=True)]
    if len(pairs) == len(positions_lps):
        return [[pair] for pair in pairs]
    src_pos = source.get("ImagePositionPatient")
    if not isinstance(src_pos, list) or len(src_pos) != len(pairs):
        return [list(pairs) for _ in positions_lps]
    src = np.asarray(src_pos, dtype=np.float64)
    refs = []
    for position in positions_lps:
        nearest = int(np.argmin(np.linalg.norm(src - np.asarray(position, dtype=np.float64), axis=1)))
        refs.append([pairs[nearest]])
    return refs


#: ``attrs["dicom"]`` entries that are per-slice lists in ``z`` order (the DICOM reader's).
PER_SLICE_TAGS = ("SOPInstanceUID", "SOPClassUID", "InstanceNumber", "ImagePositionPatient", "FrameIndex",
                  "RescaleSlope", "RescaleIntercept")


def select_slices(source: dict[str, Any], indices: Sequence[int], n_slices: int) -> dict[str, Any]:
    """``attrs["dicom"]`` of a store restricted to its slices ``indices`` (of ``n_slices``).

    A reconstruction of slices 50..57 of an ingested series keeps the series' study, patient and
    frame-of-reference tags, and the per-slice lists (:data:`PER_SLICE_TAGS`) of exactly those
    slices, so :func:`source_references` maps output slice ``k`` to the source instance it was
    computed from. Lists of another length (constant tags, a malformed record) are kept whole.
    """
    out = dict(source)
    for key in PER_SLICE_TAGS:
        value = source.get(key)
        if isinstance(value, list) and len(value) == n_slices:
            out[key] = [value[int(i)] for i in indices]
    return out


def _equipment(purpose: tuple[str, str, str], description: str, when: datetime.datetime) -> Dataset:
    item = Dataset()
    item.Manufacturer = "scorerecon"
    item.ManufacturerModelName = "scorerecon"
    item.SoftwareVersions = __version__
    item.ContributionDateTime = when.strftime("%Y%m%d%H%M%S")
    item.ContributionDescription = description[:1024]
    item.PurposeOfReferenceCodeSequence = DicomSequence([_code(*purpose)])
    return item


def add_derivation(dcm: Dataset, references: list[tuple[str, str]], source: dict[str, Any],
                   description: str, when: datetime.datetime) -> None:
    """Add the source-image, referenced-series and contributing-equipment sequences to one slice."""
    if references:
        items = []
        for sop_class, sop_uid in references:
            item = Dataset()
            item.ReferencedSOPClassUID = sop_class
            item.ReferencedSOPInstanceUID = sop_uid
            item.PurposeOfReferenceCodeSequence = DicomSequence([_code(*SOURCE_IMAGE_PURPOSE)])
            items.append(item)
        dcm.SourceImageSequence = DicomSequence(items)
        series_uid = source.get("SeriesInstanceUID")
        if series_uid and source.get("StudyInstanceUID") == dcm.get("StudyInstanceUID"):
            series = Dataset()
            series.SeriesInstanceUID = str(series_uid)
            instances = []
            for sop_class, sop_uid in references:
                ref = Dataset()
                ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID = sop_class, sop_uid
                instances.append(ref)
            series.ReferencedInstanceSequence = DicomSequence(instances)
            dcm.ReferencedSeriesSequence = DicomSequence([series])
    dcm.ContributingEquipmentSequence = DicomSequence([_equipment(PROCESSING_EQUIPMENT, description, when)])


def deidentify(dcm: Dataset, when: datetime.datetime) -> None:
    """Apply the PS3.15 Basic Application Level Confidentiality Profile to ``dcm`` in place.

    Keeps the pixel data and geometry, removes private tags (scorerecon's own block holds
    absolute source paths) and records the de-identification as the standard asks. Two fixes
    on top of dicom-anonymizer's defaults, both choices the profile allows: dates and times it
    would set to a dummy (``00010101``, not a valid DA for dciodvfy) are emptied instead (action
    Z), and the source-image / referenced-series sequences are rebuilt with the *same* UID
    mapping it used for this dataset's own UIDs (action U), rather than left with empty items.
    """
    from dicomanonymizer import anonymize_dataset
    from dicomanonymizer.simpledicomanonymizer import get_UID

    derivation = dcm.get("DerivationDescription")
    equipment = list(dcm.get("ContributingEquipmentSequence") or [])  # scorerecon's own, no identifiers
    sources = [(str(i.ReferencedSOPClassUID), str(i.ReferencedSOPInstanceUID))
               for i in dcm.get("SourceImageSequence") or []]
    source_series = [str(i.SeriesInstanceUID) for i in dcm.get("ReferencedSeriesSequence") or []]
    anonymize_dataset(dcm, delete_private_tags=True)
    for elem in list(dcm):
        if elem.VR in ("DA", "DT") and str(elem.value or "").startswith("00010101"):
            elem.value = ""  # the anonymizer's dummy date is not a valid DA; empty is action Z
    for keyword in ("SourceImageSequence", "ReferencedSeriesSequence"):
        if keyword in dcm:
            delattr(dcm, keyword)
    if derivation:
        dcm.DerivationDescription = "scorerecon reconstruction (de-identified export)"
    if sources:
        source = {"SOPInstanceUID": [get_UID(u) for _, u in sources], "SOPClassUID": [c for c, _ in sources],
                  "StudyInstanceUID": dcm.get("StudyInstanceUID"),
                  "SeriesInstanceUID": get_UID(source_series[0]) if source_series else None}
        add_derivation(dcm, list(zip(source["SOPClassUID"], source["SOPInstanceUID"], strict=True)), source,
                       "", when)
    dcm.PatientIdentityRemoved = "YES"
    dcm.DeidentificationMethod = "PS3.15 Basic Profile (dicom-anonymizer)"
    dcm.DeidentificationMethodCodeSequence = DicomSequence([_code(*BASIC_PROFILE)])
    equipment.append(_equipment(DEIDENTIFYING_EQUIPMENT, "basic profile de-identification", when))
    dcm.ContributingEquipmentSequence = DicomSequence(equipment)
