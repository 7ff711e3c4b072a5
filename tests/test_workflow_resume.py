"""The plain command resumes after ``kill -9`` (issue 19): no profile, no ``--rerun-incomplete``.

A real run (ingest of a noise volume, then its DICOM export) is killed with SIGKILL, Snakemake
and the job alike, while the export job writes. The export rule ``mkdir -p``s its output folder
before ``scorerecon export`` fills it, so the killed job leaves that folder under its real name
with Snakemake's incomplete marker. Without the workflow profile (``--workflow-profile none``) the
next plain run stops on the marker; with it (``profiles/default`` next to the Snakefile, which
Snakemake applies to every run: ``rerun-incomplete: true``) the same plain command redoes the
export, keeps the finished ingest and ends with a complete output.
"""

from __future__ import annotations

import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import yaml
from workflow_helpers import (
    REPO,
    kill_tree,
    make_workdir,
    run_snakemake,
    start_snakemake,
    tail,
)

from scorerecon.modalities.io.store import open_store

SLICES = 128


@pytest.mark.slow  # three Snakemake start-ups (~10 s each on a shared 2-core CPU) and two real jobs
def test_plain_rerun_after_kill_9_finishes_the_job(tmp_path: Path) -> None:
    assert (REPO / "profiles" / "default" / "config.yaml").is_file()
    rng = np.random.default_rng(19)
    noise = np.frombuffer(rng.bytes(256 * 256 * SLICES * 2), np.int16).reshape(256, 256, SLICES)
    nib.save(nib.Nifti1Image(noise, np.diag([0.8, 0.8, 1.2, 1.0])), tmp_path / "vol.nii")
    config = {"outdir": "results/resume", "samples": {"checkpoints": []},
              "inputs": {"vol": {"paths": [str(tmp_path / "vol.nii")], "export": ["dicom"]}}}
    (tmp_path / "resume.yaml").write_text(yaml.safe_dump(config))
    target = "results/resume/exports/vol/dicom"
    plain = ["--configfile", tmp_path / "resume.yaml", "--cores", "1", target]  # what a user types, no profile
    work = make_workdir(tmp_path / "work")
    out, store = work / target, work / "results/resume/stores/vol.zarr"

    # run, and kill -9 everything once the export job is writing its slices
    log_path = tmp_path / "killed.log"
    proc = start_snakemake(*plain, cwd=work, log_path=log_path)
    try:
        deadline = time.monotonic() + 180
        while not any(out.glob(".partial-*/*.dcm")):
            assert proc.poll() is None, f"the run ended before it could be killed:\n{tail(log_path.read_text())}"
            assert time.monotonic() < deadline, f"the export never started:\n{tail(log_path.read_text())}"
            time.sleep(0.01)
    finally:
        kill_tree(proc)
    assert "workflow specific profile" in log_path.read_text()  # Snakemake found profiles/default
    assert out.is_dir() and not (out / "vol_dicom").exists()  # debris under the real name
    assert any((work / ".snakemake" / "incomplete").iterdir())
    ingested = (store / "zarr.json").stat().st_mtime_ns

    # without the workflow profile, the marker stops the plain command (what issue 19 saw)
    refused = run_snakemake(*plain, "--workflow-profile", "none", cwd=work)
    assert refused.returncode != 0, tail(refused.stdout)
    assert "seem to be incomplete" in refused.stdout and target in refused.stdout, tail(refused.stdout)

    # the plain command again: redoes the export only, and finishes
    result = run_snakemake(*plain, cwd=work)
    assert result.returncode == 0, tail(result.stdout)
    assert "rule export:" in result.stdout and "rule ingest:" not in result.stdout
    assert (store / "zarr.json").stat().st_mtime_ns == ingested
    assert len(list((out / "vol_dicom").glob("*.dcm"))) == SLICES == open_store(store).sizes["z"]
    assert not list(out.glob(".partial-*"))
    again = run_snakemake(*plain, cwd=work)
    assert again.returncode == 0 and "Nothing to be done" in again.stdout, tail(again.stdout)
