"""DICOMweb connectors: pull a study (WADO-RS) into a folder, push a series back (STOW-RS).

Both go through ``dicomweb-client`` (``DICOMwebClient``); nothing here speaks HTTP by hand.
The usual round trip with a PACS (tested against a real Orthanc with its DICOMweb plugin)::

    files = pull_study(url, study_uid, "in/")          # one file per instance, never modified
    ingest(files, "study.zarr") ... export_store(..., "dicom", "derived/")
    push_series(url, "derived/")                       # the derived series joins the same study

Pulled instances are written as ``<folder>/<SeriesInstanceUID>/<SOPInstanceUID>.dcm`` (UIDs, never
patient names, in paths). Errors from the server or the network become one
:class:`~scorerecon.pipelines.errors.InputError` line naming the URL.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pydicom

from scorerecon.errors import InputError


def _client(url: str) -> Any:
    from dicomweb_client.api import DICOMwebClient

    client = DICOMwebClient(url=url.rstrip("/"))
    # a few quick retries for a busy server, not dicomweb-client's default back-off of ~30 s
    client.set_http_retry_params(retry=True, max_attempts=3, wait_exponential_multiplier=100)
    return client


def _fail(url: str, what: str, exc: Exception) -> InputError:
    return InputError(None, f"DICOMweb {what} at {url} failed ({type(exc).__name__}: {str(exc).splitlines()[0]})")


def find_studies(url: str, **search_filters: str) -> list[str]:
    """StudyInstanceUIDs the server lists (QIDO-RS), optionally filtered (e.g. ``ModalitiesInStudy="CT"``)."""
    try:
        found = _client(url).search_for_studies(search_filters=search_filters or None)
    except Exception as exc:  # requests / HTTP errors of many kinds
        raise _fail(url, "study search", exc) from None
    return [pydicom.Dataset.from_json(s).StudyInstanceUID for s in found]


def find_series(url: str, study_uid: str) -> list[dict[str, str]]:
    """The series of one study: ``SeriesInstanceUID``, ``Modality``, ``SeriesDescription`` (QIDO-RS)."""
    try:
        found = _client(url).search_for_series(study_instance_uid=study_uid)
    except Exception as exc:
        raise _fail(url, "series search", exc) from None
    series = []
    for item in found:
        ds = pydicom.Dataset.from_json(item)
        series.append({"SeriesInstanceUID": str(ds.SeriesInstanceUID), "Modality": str(ds.get("Modality", "")),
                       "SeriesDescription": str(ds.get("SeriesDescription", ""))})
    return series


def pull_study(url: str, study_uid: str, folder: str | os.PathLike, series_uid: str | None = None) -> list[Path]:
    """Retrieve a study (or one series of it) with WADO-RS into ``folder``; returns the files written."""
    folder = Path(folder)
    client = _client(url)
    try:
        if series_uid:
            instances = client.retrieve_series(study_instance_uid=study_uid, series_instance_uid=series_uid)
        else:
            instances = client.retrieve_study(study_instance_uid=study_uid)
    except Exception as exc:
        raise _fail(url, f"retrieve of study {study_uid}", exc) from None
    if not instances:
        raise InputError(None, f"DICOMweb server {url} returned no instances for study {study_uid}")
    written = []
    for ds in instances:
        target = folder / str(ds.SeriesInstanceUID) / f"{ds.SOPInstanceUID}.dcm"
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".partial-{target.name}")
        ds.save_as(partial, enforce_file_format=True)
        os.replace(partial, target)
        written.append(target)
    return sorted(written)


def push_series(url: str, paths: str | os.PathLike | list[str | os.PathLike]) -> list[str]:
    """Store the DICOM files of a folder (or a list of files) with STOW-RS; returns the stored SOPInstanceUIDs.

    Raises :class:`InputError` when the server rejects any instance (its FailedSOPSequence).
    """
    items = [Path(paths)] if isinstance(paths, (str, os.PathLike)) else [Path(p) for p in paths]
    files = sorted(f for p in items for f in ([*p.rglob("*.dcm")] if p.is_dir() else [p]))
    if not files:
        raise InputError(items[0] if items else None, "no DICOM files to push")
    datasets = [pydicom.dcmread(f) for f in files]
    try:
        response = _client(url).store_instances(datasets=datasets)
    except Exception as exc:
        raise _fail(url, "store", exc) from None
    failed = response.get("FailedSOPSequence") if response is not None else None
    if failed:
        uids = ", ".join(str(item.get("ReferencedSOPInstanceUID", "?")) for item in failed)
        raise InputError(None, f"DICOMweb server {url} rejected {len(failed)} instance(s): {uids}")
    return [str(ds.SOPInstanceUID) for ds in datasets]
