"""DICOMweb round trip against a real Orthanc (Debian ``orthanc`` + ``orthanc-dicomweb``) on 127.0.0.1.

Push pydicom's CT_small.dcm (STOW-RS), pull its study back (WADO-RS), ingest, export the derived
series and push it into the same study; the PACS then lists both series, and the derived one,
pulled back, passes ``dciodvfy`` and references the source instance.

Orthanc: an instance already answering on 127.0.0.1:8042 (``.ci/run`` starts one) is used;
otherwise this test starts its own with ``.ci/orthanc/start.sh`` on a free port when Orthanc and
the plugin are installed. Without either it skips, unless ``SCORERECON_ORTHANC=1`` (CI), where it
fails instead.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file

from scorerecon.modalities.io.dicomweb import find_series, find_studies, pull_study, push_series
from scorerecon.modalities.io.export import export_store
from scorerecon.pipelines.ingest import ingest

REPO = Path(__file__).resolve().parents[1]
REQUIRED = os.environ.get("SCORERECON_ORTHANC") == "1"


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/studies", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory) -> Iterator[str]:
    url = os.environ.get("SCORERECON_ORTHANC_URL", "http://127.0.0.1:8042/dicom-web")
    if _answers(url):
        yield url
        return
    if not Path("/usr/sbin/Orthanc").exists() and not REQUIRED:
        pytest.skip("no Orthanc answering and none installed (apt-get install orthanc orthanc-dicomweb)")
    env = dict(os.environ, ORTHANC_PORT=str(_free_port()), ORTHANC_STATE=str(tmp_path_factory.mktemp("orthanc")))
    started = subprocess.run([str(REPO / ".ci/orthanc/start.sh")], env=env, capture_output=True, text=True, timeout=120)
    if started.returncode != 0:
        message = f"could not start Orthanc: {started.stderr.strip()[-500:]}"
        if REQUIRED:
            pytest.fail(message)
        pytest.skip(message)
    try:
        yield f"http://127.0.0.1:{env['ORTHANC_PORT']}/dicom-web"
    finally:
        subprocess.run([str(REPO / ".ci/orthanc/stop.sh")], env=env, timeout=60, check=False)


def test_pull_study_push_derived_series_round_trip(orthanc, tmp_path):
    source_path = Path(get_testdata_file("CT_small.dcm"))
    source = pydicom.dcmread(source_path)
    assert push_series(orthanc, [source_path]) == [source.SOPInstanceUID]
    assert source.StudyInstanceUID in find_studies(orthanc)

    pulled = pull_study(orthanc, source.StudyInstanceUID, tmp_path / "pulled", series_uid=source.SeriesInstanceUID)
    assert [pydicom.dcmread(p).SOPInstanceUID for p in pulled] == [source.SOPInstanceUID]
    assert all(str(source.PatientName) not in str(p) for p in pulled)  # UIDs, not names, in paths

    store = ingest(pulled, tmp_path / "study.zarr")
    derived = export_store(store, "dicom", tmp_path / "derived")
    stored = push_series(orthanc, derived)
    series = {s["SeriesInstanceUID"]: s for s in find_series(orthanc, source.StudyInstanceUID)}
    derived_uid = pydicom.dcmread(next(derived.glob("*.dcm"))).SeriesInstanceUID
    assert {source.SeriesInstanceUID, derived_uid} <= set(series)
    assert series[derived_uid]["SeriesDescription"] == "scorerecon export"

    back = pull_study(orthanc, source.StudyInstanceUID, tmp_path / "back", series_uid=derived_uid)
    assert [pydicom.dcmread(p).SOPInstanceUID for p in back] == stored
    dcm = pydicom.dcmread(back[0])
    assert dcm.StudyInstanceUID == source.StudyInstanceUID
    assert dcm.SourceImageSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
    if shutil.which("dciodvfy"):
        report = subprocess.run(["dciodvfy", str(back[0])], capture_output=True, text=True, timeout=60)
        assert not [line for line in (report.stdout + report.stderr).splitlines() if line.startswith("Error")]


def test_unreachable_server_is_one_clear_error(tmp_path):
    from scorerecon.pipelines.errors import InputError

    with pytest.raises(InputError, match=r"DICOMweb .* at http://127\.0\.0\.1:\d+/dicom-web failed"):
        find_studies(f"http://127.0.0.1:{_free_port()}/dicom-web")
