"""The workflow on a real SLURM cluster (slurmctld + slurmd on this machine), no mocks.

Runs the reduced config ``workflows/config/ci_slurm.yaml`` (a PNG and the demo brain NIfTI:
ingest -> export, the GPU-requesting ``hardware`` job, the report) through
``snakemake --executor slurm --profile workflows/profiles/slurm``, exactly as a user would, and
checks that the outputs are right and that every job really went through SLURM: a SLURM job id
per Snakemake job, each COMPLETED in ``scontrol``, run in the work directory, with its SLURM log;
the ``hardware`` job got the (fake) GPU it asked for; and status came from ``squeue`` (the
cluster has no accounting, so ``sacct`` cannot have answered).

Skipped unless a cluster already answers, or ``SCORERECON_SLURM=1`` (CI: ``.ci/run`` sets it
after starting the cluster) in which case ``.ci/slurm/start.sh`` is run and must succeed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import yaml
from PIL import Image
from workflow_helpers import REPO, make_workdir, run_snakemake, tail

from scorerecon.modalities.io.store import open_store

CONFIG = REPO / "workflows" / "config" / "ci_slurm.yaml"
PROFILE = REPO / "workflows" / "profiles" / "slurm"
START = REPO / ".ci" / "slurm" / "start.sh"


def _cluster_answers() -> bool:
    """True if slurmctld answers and the node can take jobs."""
    if shutil.which("scontrol") is None or shutil.which("sinfo") is None:
        return False
    try:
        # a stopped controller makes scontrol retry for ~10 s; a live one answers in milliseconds
        ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=5)
        states = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=5)
    except subprocess.TimeoutExpired:
        return False
    return "is UP" in ping.stdout and bool(re.search(r"^(idle|mixed|allocated|completing)", states.stdout, re.M))


@pytest.fixture(scope="module")
def slurm_cluster() -> None:
    """A running cluster: the one already up, or (SCORERECON_SLURM=1) the one start.sh starts."""
    if _cluster_answers():
        return
    if os.environ.get("SCORERECON_SLURM") != "1":
        pytest.skip("no SLURM cluster answers; set SCORERECON_SLURM=1 (as root) to start one with .ci/slurm/start.sh")
    result = subprocess.run([str(START)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"start.sh failed:\n{result.stdout}\n{result.stderr}"
    assert _cluster_answers(), "start.sh returned but the cluster does not answer"


def _job_record(job_id: str) -> dict[str, str]:
    """``scontrol show job`` as a dict (finished jobs stay listed for MinJobAge seconds)."""
    out = subprocess.run(["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True,
                         timeout=20, check=True).stdout
    # -o: one line of Key=Value pairs; values may contain spaces only in a few keys we do not use
    return dict(item.split("=", 1) for item in out.split() if "=" in item)


@pytest.mark.slow
def test_reduced_workflow_runs_through_slurm(slurm_cluster: None, tmp_path: Path) -> None:
    workdir = make_workdir(tmp_path / "run")
    result = run_snakemake(
        "--executor", "slurm", "--profile", PROFILE, "--configfile", CONFIG, "--directory", workdir,
        # status every few seconds instead of the profile's 20 s: the jobs here take seconds
        "--slurm-init-seconds-before-status-checks", "3",
        "--slurm-keep-successful-logs",
        cwd=REPO, timeout_s=420)
    log = result.stdout
    assert result.returncode == 0, f"snakemake --executor slurm failed (rc {result.returncode}):\n{tail(log)}"

    config = yaml.safe_load(CONFIG.read_text())
    out = workdir / config["outdir"]

    # --- outputs are there and right ---
    kodak = open_store(out / "stores" / "kodak.zarr")
    source_rgb = np.asarray(Image.open(REPO / "data/demo/kodim23.png").convert("RGB"))
    assert np.array_equal(kodak["image"].transpose("y", "x", "band").values, source_rgb)

    brain = open_store(out / "stores" / "brain_mri.zarr")
    source = nib.load(REPO / "data/demo/colin27_t1.nii.gz")
    source_zyx = np.asarray(source.dataobj).transpose(2, 1, 0)
    assert np.array_equal(brain["image"].values, source_zyx)

    nifti_dir = out / "exports" / "brain_mri" / "nifti"
    exported = nib.load(next(p for p in nifti_dir.glob("*.nii*") if p.suffix != ".sha256"))  # not the digest list
    assert (nifti_dir / "brain_mri.nii.gz.sha256").is_file()
    assert np.allclose(exported.affine, source.affine)
    assert np.array_equal(np.asarray(exported.dataobj), np.asarray(source.dataobj))

    pngs = sorted((out / "exports" / "kodak" / "png").rglob("*.png"))
    assert pngs, "no PNG exported"
    assert any(np.array_equal(np.asarray(Image.open(p)), source_rgb) for p in pngs), \
        "no exported PNG has the source's pixels"

    report = (out / "report.html").read_text()
    assert "kodak.zarr" in report and "brain_mri.zarr" in report
    assert report.count("data:image/png;base64,") >= 3

    # --- every job went through SLURM ---
    jobs = dict(re.findall(r"Job (\d+) has been submitted with SLURM jobid (\d+)", log))
    rules = config["inputs"]
    expected_jobs = 2 * len(rules) + 3  # ingest + export per input, hardware, report, provenance crate
    assert len(jobs) == expected_jobs, f"expected {expected_jobs} SLURM submissions:\n{tail(log)}"
    comments = {}
    for slurm_id in jobs.values():
        record = _job_record(slurm_id)
        assert record["JobState"] == "COMPLETED", record
        assert Path(record["WorkDir"]).resolve() == workdir.resolve()
        comments[record["Comment"]] = record
        logs = list((workdir / ".snakemake" / "slurm_logs").rglob(f"{slurm_id}.log"))
        assert logs, f"no SLURM log for job {slurm_id}"
    assert {"rule_hardware", "rule_report", "rule_ingest_wildcards_kodak",
            "rule_export_wildcards_brain_mri_nifti"} <= set(comments)

    # the GPU request (profile: set-resources hardware: gpu: 1 -> --gpus=1) was scheduled on the gres
    gpu_job = comments["rule_hardware"]
    assert "gpu" in gpu_job.get("TresPerJob", "") + gpu_job.get("TresPerNode", ""), gpu_job
    hardware = json.loads((out / "hardware.json").read_text())
    assert hardware["slurm"]["SLURM_JOB_ID"] == gpu_job["JobId"]
    assert hardware["slurm"].get("SLURM_GPUS_ON_NODE") == "1"
    # a CPU-only job is given no GPU
    assert "gpu" not in comments["rule_report"].get("TresPerJob", "")

    # status came from squeue: on the CI cluster (no accounting) sacct cannot report on any job
    assert yaml.safe_load((PROFILE / "config.yaml").read_text())["slurm-status-command"] == "squeue"
    if _cluster_name() == "scorerecon-ci":
        sacct = subprocess.run(["sacct", "-j", ",".join(jobs.values()), "-n", "-X", "-o", "JobID"],
                               capture_output=True, text=True, timeout=20)
        assert "accounting storage is disabled" in (sacct.stdout + sacct.stderr).lower(), sacct


def _cluster_name() -> str:
    config = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True, timeout=20).stdout
    match = re.search(r"^ClusterName\s*=\s*(\S+)", config, re.M)
    return match.group(1) if match else ""
