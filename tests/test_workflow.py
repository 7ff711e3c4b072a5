"""The Snakemake workflow itself: lint-clean, builds its DAG, and resumes after a hard kill.

The resumability test is the one that matters in practice: a run killed with SIGKILL (OOM
killer, batch-system hard kill, power loss) and started again with the same command must finish
and give exactly what an uninterrupted run gives, never mistaking a half-written store for a
finished one. Two layers make that hold: stores are written under a ``.NAME.partial-xxxx``
sibling and renamed only when complete (``modalities/io/store.py``), and Snakemake's incomplete
markers with ``rerun-incomplete`` (the workflow profile ``profiles/default``, which Snakemake applies to
every run, and the local profile) redo a job whose output exists but whose job never finished. Stale
directory locks of the killed run are cleared by ``workflows/common.smk``.
"""

from __future__ import annotations

import re
import shutil
import time
import warnings
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
from scorerecon.pipelines.errors import InputError

LOCAL_PROFILE = REPO / "workflows" / "profiles" / "local"
DEMO = yaml.safe_load((REPO / "workflows" / "config" / "demo.yaml").read_text())


def _job_counts(dry_run_output: str) -> dict[str, int]:
    """The "Job stats" table of a dry run: rule -> number of jobs."""
    table = dry_run_output.split("Job stats:", 1)[1]
    return {rule: int(n) for rule, n in re.findall(r"^(\w+)\s+(\d+)\s*$", table, re.M) if rule != "total"}


def test_lint_is_clean() -> None:
    result = run_snakemake("--lint", cwd=REPO, timeout_s=180)
    assert result.returncode == 0, f"snakemake --lint found problems:\n{tail(result.stdout)}"
    assert "Lints for" not in result.stdout


def test_demo_dry_run_builds_the_dag() -> None:
    """`snakemake -n` on the built-in demo: every configured input, export and prior gets its job."""
    wanted = DEMO["samples"]["checkpoints"]
    present = [c for c in wanted if all((REPO / "checkpoints" / c / f).is_file()
                                        for f in ("model_card.json", "model.safetensors"))]
    extra = []
    if present != wanted:
        missing = sorted(set(wanted) - set(present))
        warnings.warn(f"shipped checkpoints missing: {missing}; dry run without them", stacklevel=1)
        extra = ["--config", f"samples={{checkpoints: [{', '.join(present)}]}}"]
    result = run_snakemake("-n", "--nolock", "--cores", "2", *extra, cwd=REPO, timeout_s=180)
    assert result.returncode == 0, f"dry run failed:\n{tail(result.stdout)}"
    if "Nothing to be done" in result.stdout:
        return  # the demo has already been run here
    counts = _job_counts(result.stdout)
    n_exports = sum(len(entry.get("export", [])) for entry in DEMO["inputs"].values())
    assert counts.get("ingest", 0) <= len(DEMO["inputs"])
    assert counts.get("export", 0) <= n_exports
    assert counts.get("sample", 0) <= len(present)
    assert counts.get("all") == 1
    # on a clean checkout nothing exists yet: the full DAG
    if not (REPO / DEMO["outdir"]).exists():
        tasks: dict[str, int] = {}
        if DEMO.get("evaluate"):  # one {task} rule evaluates every task (workflows/evaluate.smk)
            tasks["evaluate"] = len(DEMO["evaluate"])
        for task in DEMO.get("reconstruct", {}):
            tasks[f"reconstruct_{task}"] = 1
        # reconstructions exported to NIfTI / DICOM (reconstruct.<task>.export)
        n_recon_exports = sum(len(e.get("export", [])) for e in DEMO.get("reconstruct", {}).values())
        if n_recon_exports:
            tasks["export_reconstruction"] = n_recon_exports
        assert counts == {"ingest": len(DEMO["inputs"]), "export": n_exports, "hardware": 1, "report": 1,
                          "provenance": 1, "all": 1, **tasks, **({"sample": len(present)} if present else {})}


def _big_nifti(path: Path) -> Path:
    """A 384 MB int16 NIfTI of incompressible noise (48 chunks): slow enough that a kill lands mid-write."""
    rng = np.random.default_rng(20240601)
    shape = (768, 512, 512)
    data = np.frombuffer(rng.bytes(int(np.prod(shape)) * 2), dtype=np.int16).reshape(shape)
    nib.save(nib.Nifti1Image(data, np.diag([0.8, 0.8, 1.2, 1.0])), path)
    return path


def _same_store(a: Path, b: Path) -> None:
    ds_a, ds_b = open_store(a), open_store(b)
    assert list(ds_a.data_vars) == list(ds_b.data_vars)
    for name in ds_a.data_vars:
        assert ds_a[name].dims == ds_b[name].dims and ds_a[name].dtype == ds_b[name].dtype
        assert ds_a[name].chunks == ds_b[name].chunks
        assert np.array_equal(ds_a[name].values, ds_b[name].values), f"{name} differs"
    assert ds_a.attrs == ds_b.attrs
    for coord in ds_a.coords:
        assert np.array_equal(ds_a[coord].values, ds_b[coord].values)


@pytest.mark.slow
def test_kill_9_mid_ingest_then_rerun_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    source = _big_nifti(tmp_path / "big.nii")
    config = {"outdir": "results/resume",
              "inputs": {"big": {"paths": [str(source)], "export": []},
                         "kodak": {"paths": ["data/demo/kodim23.png"], "export": []}},
              "samples": {"checkpoints": []}}
    config_file = tmp_path / "resume.yaml"
    config_file.write_text(yaml.safe_dump(config))
    targets = ["results/resume/stores/big.zarr", "results/resume/stores/kodak.zarr"]
    # one core and kodak first: the kill then always lands after kodak finished and while big is being
    # written, however fast the machine is (with two cores the two jobs race)
    args = ["--profile", LOCAL_PROFILE, "--configfile", config_file, "--cores", "1",
            "--prioritize=results/resume/stores/kodak.zarr", *targets]

    # reference: an uninterrupted run
    reference = make_workdir(tmp_path / "reference")
    result = run_snakemake(*args, cwd=reference)
    assert result.returncode == 0, tail(result.stdout)

    # interrupted run: kill -9 once the big store is half-written and the kodak job has finished
    work = make_workdir(tmp_path / "interrupted")
    stores = work / "results/resume/stores"
    log_path = tmp_path / "interrupted.log"
    proc = start_snakemake(*args, cwd=work, log_path=log_path)
    try:
        deadline = time.monotonic() + 240
        while True:
            text = log_path.read_text()
            kodak_job = re.search(r"output: results/resume/stores/kodak\.zarr\n(?:.*\n)*?\s+jobid: (\d+)", text)
            kodak_done = bool(kodak_job and re.search(rf"Finished jobid: {kodak_job.group(1)}\b", text))
            partials = list(stores.glob(".big.zarr.partial-*")) if stores.is_dir() else []
            half_written = any(any((p / "image" / "c").rglob("*")) for p in partials if (p / "image").is_dir())
            if kodak_done and half_written and not (stores / "big.zarr").exists():
                break
            assert proc.poll() is None, f"the run ended before it could be killed:\n{tail(text)}"
            assert time.monotonic() < deadline, f"never saw a half-written store:\n{tail(text)}"
            time.sleep(0.01)
    finally:
        kill_tree(proc)

    # the half-written store is not taken as complete
    assert not (stores / "big.zarr").exists()
    partials = list(stores.glob(".big.zarr.partial-*"))
    assert partials
    with pytest.raises(InputError, match="incomplete"):
        open_store(partials[0])
    # a non-atomic writer would have left its debris under the real name: Snakemake's incomplete
    # marker (rerun-incomplete in the profile) must make the rerun redo it rather than accept it
    shutil.copytree(partials[0], stores / "big.zarr")
    kodak_stamp = (stores / "kodak.zarr" / "zarr.json").stat().st_mtime_ns

    # the same command again: completes, redoes only the killed job
    result = run_snakemake(*args, cwd=work)
    assert result.returncode == 0, tail(result.stdout)
    assert "output: results/resume/stores/big.zarr" in result.stdout
    assert "output: results/resume/stores/kodak.zarr" not in result.stdout
    assert (stores / "kodak.zarr" / "zarr.json").stat().st_mtime_ns == kodak_stamp

    for name in ("big", "kodak"):
        _same_store(stores / f"{name}.zarr", reference / "results/resume/stores" / f"{name}.zarr")

    # and a third run has nothing left to do
    result = run_snakemake(*args, cwd=work)
    assert result.returncode == 0 and "Nothing to be done" in result.stdout, tail(result.stdout)


def test_config_files_have_no_duplicate_keys() -> None:
    """YAML silently keeps the last of two equal keys; a duplicated input would drop its settings."""

    class StrictLoader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            keys = [self.construct_object(k, deep=deep) for k, _ in node.value]
            duplicated = sorted({str(k) for k in keys if keys.count(k) > 1})
            assert not duplicated, f"{node.start_mark}: duplicate keys {duplicated}"
            return super().construct_mapping(node, deep=deep)

    files = sorted((REPO / "workflows").rglob("*.yaml"))
    assert len(files) > 3
    for path in files:
        yaml.load(path.read_text(), Loader=StrictLoader)


def test_config_engine_requests_gpus_and_passes_engine_options(tmp_path: Path) -> None:
    """`engine: {gpus, precision, batch_size}` in a workflow config: reconstruct/evaluate jobs ask for the GPU (the
    resource the SLURM executor turns into --gpus) and their commands carry the engine options."""
    config = {**DEMO, "engine": {"gpus": 1, "precision": "bf16", "batch_size": 8}}
    path = tmp_path / "gpu.yaml"
    path.write_text(yaml.safe_dump(config))
    out = DEMO["outdir"]
    result = run_snakemake("-n", "-p", "--nolock", "--cores", "2", "--forceall", f"{out}/recon/ct.zarr",
                           f"{out}/eval/mri.json", "--configfile", str(path), cwd=REPO, timeout_s=180)
    assert result.returncode == 0, tail(result.stdout)
    jobs = result.stdout.split("\nrule ")
    for rule in ("reconstruct_ct", "evaluate"):
        job = next(j for j in jobs if j.startswith(rule + ":"))
        assert re.search(r"resources: .*\bgpu=1\b", job), job
        assert "--precision bf16 --batch-size 8" in job, job
    ingest = next(j for j in jobs if j.startswith("ingest:"))
    assert "gpu=" not in ingest  # only the jobs that run a prior ask for a GPU
    default = run_snakemake("-n", "-p", "--nolock", "--cores", "2", "--forceall", f"{out}/recon/ct.zarr",
                            cwd=REPO, timeout_s=180)
    job = next(j for j in default.stdout.split("\nrule ") if j.startswith("reconstruct_ct:"))
    assert re.search(r"\bgpu=0\b", job) and "--precision" not in job
