"""Run provenance end to end: a real Snakemake run -> RO-Crate + PROV-JSON -> ``provenance verify``.

One workflow run (module fixture, ~40 s on 2 cores) in a scratch working directory: pydicom's
CT_small.dcm (patient name ``CompressedSamples^CT1``) ingested and exported to DICOM and NIfTI,
plus one quick sample from a copy of the shipped ``brain_ddpm`` prior (when the
repository has it), report and crate. The tests then read the crate as a consumer would and
tamper with copies' bytes (restoring them afterwards).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from prov.model import ProvDocument
from pydicom.data import get_testdata_file
from workflow_helpers import REPO, make_workdir, run_snakemake, tail

from scorerecon.modalities.io.rocrate import CRATE_FILE, PROFILES, PROV_FILE
from scorerecon.pipelines.cli import main

CHECKPOINT = REPO / "checkpoints" / "brain_ddpm"
HAVE_CHECKPOINT = (CHECKPOINT / "model.safetensors").is_file() and (CHECKPOINT / "model_card.json").is_file()
PATIENT = ("CompressedSamples", "1CT1")  # CT_small.dcm's PatientName (part) and PatientID


pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[Path, Path]:
    work = make_workdir(tmp_path_factory.mktemp("provenance") / "work")
    samples = {"checkpoints": [], "n": 1, "nfe": 25, "seed": 7}
    if HAVE_CHECKPOINT:
        shutil.copytree(CHECKPOINT, work / "checkpoints" / "brain_ddpm",
                        ignore=shutil.ignore_patterns("training_state*", "loss_log.csv*"))
        samples["checkpoints"] = ["brain_ddpm"]
    config = {"outdir": "results/run", "samples": samples,
              "inputs": {"ct": {"paths": [get_testdata_file("CT_small.dcm")], "export": ["dicom", "nifti"]}}}
    (work / "config.yaml").write_text(json.dumps(config))
    result = run_snakemake("--configfile", "config.yaml", "--cores", "2", cwd=work, timeout_s=480)
    assert result.returncode == 0, tail(result.stdout)
    return work, work / "results" / "run"


def graph_of(run_dir: Path) -> dict[str, dict]:
    return {e["@id"]: e for e in json.loads((run_dir / CRATE_FILE).read_text())["@graph"]}


def test_crate_is_a_provenance_run_crate_of_every_job(run):
    _, run_dir = run
    graph = graph_of(run_dir)
    root = graph["./"]
    assert {c["@id"] for c in root["conformsTo"]} == set(PROFILES)
    workflow = graph[root["mainEntity"]["@id"]]
    assert "ComputationalWorkflow" in workflow["@type"] and workflow["@id"] == "workflow/Snakefile"
    assert (run_dir / "workflow" / "Snakefile").is_file()
    jobs = [e for e in graph.values() if e["@type"] == "CreateAction" and e["@id"] != "#run"]
    rules = sorted(graph[j["instrument"]["@id"]]["name"] for j in jobs)
    expected = ["rule export"] * 2 + ["rule hardware", "rule ingest", "rule report"]
    assert rules == sorted(expected + (["rule sample"] if HAVE_CHECKPOINT else []))
    for job in jobs:
        assert job["startTime"] <= job["endTime"] and job["result"]
        assert any(graph[u["@id"]]["name"] == "wall time" for u in job.get("resourceUsage", [])) \
            or graph[job["instrument"]["@id"]]["name"] == "rule provenance"
    organize = next(e for e in graph.values() if e["@type"] == "OrganizeAction")
    assert graph[organize["instrument"]["@id"]]["name"] == "snakemake" and len(organize["object"]) == len(jobs)
    assert {s["@id"] for s in workflow["step"]} == {f"#step:{r.split()[1]}" for r in rules}
    files = [e for e in graph.values() if e["@type"] == "File" and not e["@id"].startswith("#")]
    assert files and all(len(e.get("sha256", "")) == 64 for e in files if e["@id"] != PROV_FILE or "sha256" in e)
    store = graph["stores/ct.zarr/"]
    assert store["reader"] == "scorerecon.modalities.io.dicom" and len(store["treeSha256"]) == 64
    source = graph[store["isBasedOn"][0]["@id"]]
    assert source["relativePath"].endswith("CT_small.dcm") and len(source["sha256"]) == 64
    versions = {e["name"]: e.get("version") for e in graph.values() if e["@id"].startswith("#software:")}
    assert versions["scorerecon"] and versions["snakemake"] and versions["python"]


@pytest.mark.skipif(not HAVE_CHECKPOINT, reason="checkpoints/brain_ddpm not in this checkout")
def test_crate_records_checkpoint_card_and_seed(run):
    _, run_dir = run
    graph = graph_of(run_dir)
    card = graph["#input:checkpoints/brain_ddpm/model_card.json"]
    weights = graph["#input:checkpoints/brain_ddpm/model.safetensors"]
    assert card["cardWeightsSha256"] == weights["sha256"]
    assert card["modelName"] == "brain_ddpm" and card["parametrization"]
    sample = next(e for e in graph.values() if e["@id"].startswith("#job:sample"))
    values = {graph[o["@id"]]["name"]: graph[o["@id"]]["value"] for o in sample["object"]
              if graph[o["@id"]]["@type"] == "PropertyValue"}
    assert values["seed"] == "7" and values["nfe"] == "25"


def test_no_patient_name_or_id_in_crate_prov_or_logs(run):
    _, run_dir = run
    texts = [run_dir / CRATE_FILE, run_dir / PROV_FILE, *sorted((run_dir / "logs").rglob("*.log"))]
    for path in texts:
        text = path.read_text()
        for identifier in PATIENT:
            assert identifier not in text, f"{identifier} in {path}"


def test_prov_json_export_parses(run, capsys):
    _, run_dir = run
    assert main(["provenance", "prov", str(run_dir)]) == 0
    doc = ProvDocument.deserialize(content=capsys.readouterr().out, format="json")
    records = doc.get_records()
    activities = [r for r in records if r.get_type().localpart == "Activity"]
    assert len(activities) >= 6
    stored = ProvDocument.deserialize(source=str(run_dir / PROV_FILE), format="json")
    assert len(stored.get_records()) == len(records)


def test_verify_walks_from_an_output_back_to_its_source(run, capsys):
    work, run_dir = run
    dcm = run_dir / "exports" / "ct" / "dicom" / "ct_dicom" / "IM00001.dcm"
    assert main(["provenance", "verify", str(dcm)]) == 0
    out = capsys.readouterr().out
    assert "IM00001.dcm" in out and "stores/ct.zarr" in out and "CT_small.dcm" in out
    assert main(["provenance", "verify", str(run_dir), "-q"]) == 0


def test_verify_names_a_tampered_output_in_one_line(run, capsys):
    _, run_dir = run
    target = run_dir / "exports" / "ct" / "nifti" / "ct.nii.gz"
    original = target.read_bytes()
    try:
        target.write_bytes(original[:100] + bytes([original[100] ^ 0x01]) + original[101:])
        assert main(["provenance", "verify", str(target)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "ct.nii.gz" in err and "changed since the run" in err
        assert main(["provenance", "verify", str(run_dir), "-q"]) == 2
        assert "ct.nii.gz" in capsys.readouterr().err
    finally:
        target.write_bytes(original)
    assert main(["provenance", "verify", str(target)]) == 0


@pytest.mark.skipif(not HAVE_CHECKPOINT, reason="checkpoints/brain_ddpm not in this checkout")
def test_verify_catches_swapped_checkpoint_weights(run, capsys):
    work, run_dir = run
    weights = work / "checkpoints" / "brain_ddpm" / "model.safetensors"
    original = weights.read_bytes()
    try:
        weights.write_bytes((REPO / "checkpoints" / "brain_ddpm" / "training_state.safetensors").read_bytes()
                            if (REPO / "checkpoints" / "brain_ddpm" / "training_state.safetensors").is_file()
                            else original[:-1] + b"\0")
        assert main(["provenance", "verify", str(run_dir / "samples" / "brain_ddpm.png")]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "model.safetensors" in err
    finally:
        weights.write_bytes(original)
    assert main(["provenance", "verify", str(run_dir / "samples" / "brain_ddpm.png")]) == 0


def test_verify_refuses_a_file_outside_any_crate(tmp_path):
    stray = tmp_path / "x.txt"
    stray.write_text("x")
    assert main(["provenance", "verify", str(stray)]) == 2
