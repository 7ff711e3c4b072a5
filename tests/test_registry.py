"""The task registry is the one table: it agrees with the code, the shipped priors, the CLI and the workflow
schema, and every task -- natural photographs included -- reconstructs a user's degraded input.

Natural reconstruct runs end to end on a real photograph (the held-out Kodak image shipped in
``data/demo``), degraded here the way a user's picture would be, with a few NFE: the checks are
of behaviour (grid, pixel type, provenance, data consistency, one-line refusals), never of PSNR.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr
from PIL import Image

from scorerecon.hashing import sha256_file
from scorerecon.modalities.io.store import open_store
from scorerecon.modalities.natural import degradations as deg
from scorerecon.modalities.natural.datasets import load_rgb
from scorerecon.models.checkpoint import read_card, resolve_checkpoint
from scorerecon.pipelines.cli import build_parser, main
from scorerecon.pipelines.tasks.registry import (
    TASKS,
    default_checkpoint,
    get_task,
    markdown_table,
    resolve,
    task_names,
)

REPO = Path(__file__).resolve().parents[1]
KODIM23 = REPO / "data" / "demo" / "kodim23.png"  # held out from every Kodak prior's training
SCHEMA = json.loads((REPO / "workflows" / "config" / "schema.json").read_text())


def _task_choices(command: str) -> tuple[str, ...]:
    parser = build_parser([command])
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
    return tuple(next(a for a in sub._actions if "--task" in a.option_strings).choices)


def _flags(command: str) -> set[str]:
    parser = build_parser([command])
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
    return {flag for action in sub._actions for flag in action.option_strings}


# ------------------------------------------------------------------------------------------------
# the table agrees with the code and the shipped priors
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(TASKS))
def test_every_prior_is_shipped_and_of_its_kind(name: str) -> None:
    """Each role's checkpoint exists in checkpoints/ with weights; a ``cond`` model takes a condition, a prior none."""
    task = get_task(name)
    assert task.default_solver in task.solvers
    assert task.default_prior in task.priors.values()
    for role, checkpoint in task.priors.items():
        where = resolve_checkpoint(checkpoint)
        assert where.resolve().parent == (REPO / "checkpoints").resolve(), f"{checkpoint} is not a shipped prior"
        assert (where / "model.safetensors").is_file()
        cond_channels = int(read_card(where)["network"].get("cond_channels", 0))
        assert (cond_channels > 0) == (role != "prior"), f"{name}: {checkpoint} as {role}"
    for solver in task.solvers:  # every solver has the prior it runs
        assert task.prior_for(solver) in task.priors.values()
    assert default_checkpoint(name, "cond" if task.default_solver in task.conditional else "prior") \
        == task.default_prior


@pytest.mark.parametrize("name", list(TASKS))
def test_every_reference_resolves_and_every_solver_is_implemented(name: str) -> None:
    from scorerecon.pipelines.tasks import SOLVERS
    from scorerecon.pipelines.tasks.natural import NATURAL_SOLVERS

    task = get_task(name)
    for ref in (task.physics.operator, task.physics.simulate, task.physics.problem, task.metric_fn,
                task.reconstruct):
        if ref is not None:
            assert callable(resolve(ref)), ref
    assert callable(resolve(task.evaluate + ":evaluate_from_args"))
    assert task.baseline_names() and all(isinstance(b, str) for b in task.baseline_names())
    implemented = {"MR": SOLVERS, "CT": SOLVERS, "photo": NATURAL_SOLVERS, "optical": ()}[task.modality]
    for solver in task.solvers:
        assert solver in task.conditional or solver in implemented, f"{name}: solver {solver!r} is not implemented"
    assert all(s in task.solvers for s in task.conditional)
    assert task.primary in task.metrics and task.convention and task.nfe >= 1 and task.samples >= 1


def test_metric_functions_report_the_declared_metrics() -> None:
    """Each task's metric function, run on a small real-valued pair, returns the metrics the registry names."""
    rng = np.random.default_rng(0)
    ref = rng.random((2, 16, 16)).astype(np.float32)
    est = np.clip(ref + 0.05 * rng.standard_normal(ref.shape), 0, 1).astype(np.float32)
    hu = 1400 * ref - 1000
    ms = rng.random((4, 32, 32)) + 0.5
    mask = np.zeros((32, 32), bool)
    mask[8:24, 8:24] = True
    calls = {"mri": lambda f: f(ref, est), "ct": lambda f: f(hu, hu + 10 * est),
             "photo": lambda f: f(ref[0, :, :, None].repeat(3, -1), est[0, :, :, None].repeat(3, -1)),
             "pansharpen": lambda f: f(ms, ms * 1.01, 2), "s2sr": lambda f: f(ms, ms * 1.01, 2),
             "cloud": lambda f: f(ms, ms * 1.01, mask)}
    for task in TASKS.values():
        key = task.name if task.name in calls else task.modality
        reported = calls[key](resolve(task.metric_fn))
        declared = set(task.metrics) - ({"qnr", "d_lambda", "d_s"} if task.name == "pansharpen" else set())
        assert declared <= set(reported), f"{task.name}: {declared - set(reported)} not reported"


# ------------------------------------------------------------------------------------------------
# the CLI and the workflow schema are the registry's
# ------------------------------------------------------------------------------------------------
def test_cli_task_choices_are_the_registry() -> None:
    assert _task_choices("reconstruct") == task_names()
    assert set(_task_choices("evaluate")) == set(task_names())
    assert set(_task_choices("sample")) == set(task_names())


def test_declared_options_exist_on_the_commands() -> None:
    flags = _flags("reconstruct") | _flags("evaluate")
    for task in TASKS.values():
        missing = [o for o in task.options if o not in flags]
        assert not missing, f"{task.name} declares options no command has: {missing}"


def test_workflow_schema_agrees_with_the_registry() -> None:
    """Task names, solver and baseline enums of the config schema are the registry's."""
    for section, solver_key in (("evaluate", "solvers"), ("reconstruct", "solver")):
        entries = SCHEMA["properties"][section]["properties"]
        unknown = set(entries) - set(TASKS)
        assert not unknown, f"schema {section} has tasks the registry lacks: {unknown}"
        for name, entry in entries.items():
            task, props = get_task(name), entry["properties"]
            if solver_key in props:
                spec = props[solver_key].get("items", props[solver_key])
                assert tuple(spec["enum"]) == task.solvers, f"schema {section}.{name}.{solver_key}"
            if "baselines" in props:
                assert tuple(props["baselines"]["items"]["enum"]) == task.baseline_names(), \
                    f"schema {section}.{name}.baselines"


def test_docs_show_the_registry() -> None:
    """docs/tasks.md's table is the registry's (regenerate it with registry.markdown_table())."""
    assert markdown_table() in (REPO / "docs" / "tasks.md").read_text()


# ------------------------------------------------------------------------------------------------
# reconstruct on a user's degraded photograph (no ground truth)
# ------------------------------------------------------------------------------------------------
def _crop(size: int = 64) -> np.ndarray:
    x = load_rgb(KODIM23)
    r0, c0 = 96, 320  # a textured window (the parrot's head and feathers)
    return x[r0:r0 + size, c0:c0 + size]


def _png(path: Path, rgb: np.ndarray, alpha: np.ndarray | None = None) -> Path:
    pixels = np.rint(np.clip(rgb, 0, 1) * 255).astype(np.uint8)
    if alpha is not None:
        pixels = np.concatenate([pixels, alpha[..., None].astype(np.uint8)], -1)
    Image.fromarray(pixels).save(path)
    return path


def _chw(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1))[None]).double()


def _reconstruct(task: str, source: Path, out: Path, *extra: str) -> xr.Dataset:
    rc = main(["reconstruct", "--task", task, "--input", str(source), "-o", str(out), "--nfe", "2",
               "--threads", "1", "--quiet", *extra])
    assert rc == 0
    return open_store(out)


def _check_provenance(ds, task: str, source: Path, solver: str | None = None) -> None:
    registry = get_task(task)
    solver = solver or registry.default_solver
    assert ds["image"].dims == ("band", "y", "x") and list(ds["band"].values) == ["R", "G", "B"]
    assert ds["image"].dtype == np.uint8  # an 8-bit photograph comes back 8-bit
    assert ds.attrs["task"] == task and ds.attrs["reconstruction"]["solver"] == solver
    assert ds.attrs["source_files"][0]["sha256"] == sha256_file(source)
    card = read_card(resolve_checkpoint(registry.prior_for(solver)))
    assert ds.attrs["checkpoint_sha256"] == card["weights"]["sha256"]
    assert ds.attrs["command"].startswith("scorerecon reconstruct") and ds.attrs["software"]


@pytest.mark.skipif(not KODIM23.is_file(), reason="data/demo/kodim23.png missing")
def test_natural_reconstruct_end_to_end_on_a_real_photograph(tmp_path: Path) -> None:
    clean = _crop()
    # super-resolution: the x4 bicubic image in, four times its size out, as a PNG export too
    low = deg.BicubicDown(clean.shape[:2], 4).A(_chw(clean))[0].numpy().transpose(1, 2, 0)
    lr = _png(tmp_path / "lr.png", low)
    ds = _reconstruct("sr", lr, tmp_path / "sr.zarr", "--samples", "2")
    assert ds["image"].shape == (3, 64, 64) and ds["std"].shape == (3, 64, 64) and float(ds["std"].max()) > 0
    _check_provenance(ds, "sr", lr)
    assert main(["export", str(tmp_path / "sr.zarr"), "--format", "png", "-o", str(tmp_path / "png")]) == 0
    exported = np.asarray(Image.open(next((tmp_path / "png").glob("*.png"))))
    assert np.array_equal(exported, ds["image"].values.transpose(1, 2, 0))

    # inpainting: the transparent pixels are missing; every observed pixel comes back as it was
    observed = deg.random_mask(clean.shape[:2], seed=0) > 0
    holes = _png(tmp_path / "holes.png", clean, np.where(observed, 255, 0))
    ds = _reconstruct("inpaint", holes, tmp_path / "inpaint.zarr")
    _check_provenance(ds, "inpaint", holes)
    given = np.asarray(Image.open(holes))[..., :3]
    assert np.array_equal(ds["image"].values.transpose(1, 2, 0)[observed], given[observed])
    assert ds.attrs["reconstruction"]["missing_fraction"] == pytest.approx(1 - observed.mean(), abs=1e-6)

    # denoising: the noise level, not given, is estimated and recorded
    noisy = _png(tmp_path / "noisy.png", deg.add_noise(_chw(clean), 25.0, 0)[0].numpy().transpose(1, 2, 0))
    ds = _reconstruct("denoise", noisy, tmp_path / "denoise.zarr")
    _check_provenance(ds, "denoise", noisy)
    assert ds.attrs["reconstruction"]["noise_sigma_255"] == pytest.approx(25.0, rel=0.25)
    assert "sigma_estimated" in ds.attrs["reconstruction"]

    # deblurring of a linearly blurred photograph, from an ingested image store
    from scipy import ndimage

    kernel = deg.gaussian_kernel(15, 2.0)
    blurred = np.stack([ndimage.convolve(clean[..., c], kernel, mode="reflect") for c in range(3)], -1)
    blur = _png(tmp_path / "blur.png", blurred)
    assert main(["ingest", str(blur), "-o", str(tmp_path / "blur.zarr")]) == 0
    ds = _reconstruct("deblur", tmp_path / "blur.zarr", tmp_path / "deblur.zarr", "--kernel", "gaussian")
    _check_provenance(ds, "deblur", blur)
    assert ds["image"].shape == (3, 64, 64) and ds.attrs["input_store"].endswith("blur.zarr")

    # low light: the conditional model, 2 samples -> mean and std
    dark = deg.LowLight(exposure=0.15, gamma=1.5, peak=600.0, read_noise=0.01)(clean, np.random.default_rng(0))
    dim = _png(tmp_path / "dark.png", dark)
    ds = _reconstruct("lowlight", dim, tmp_path / "lowlight.zarr", "--samples", "2")
    _check_provenance(ds, "lowlight", dim)
    assert ds["image"].shape == (3, 64, 64) and "std" in ds
    assert ds.attrs["reconstruction"]["seeds"] == [0, 1]


@pytest.mark.skipif(not KODIM23.is_file(), reason="data/demo/kodim23.png missing")
@pytest.mark.parametrize("case", ["no_mask", "wrong_solver", "cond_sr_x2", "mask_size", "tweedie_samples",
                                  "foreign_option"])
def test_natural_reconstruct_refuses_bad_requests_in_one_line(tmp_path: Path, capsys, case: str) -> None:
    photo = _png(tmp_path / "photo.png", _crop(32))
    small = _png(tmp_path / "small.png", _crop(16))
    args = {"no_mask": ["--task", "inpaint"], "wrong_solver": ["--task", "sr", "--solver", "dds"],
            "cond_sr_x2": ["--task", "sr", "--solver", "cond_sr", "--scale", "2"],
            "mask_size": ["--task", "inpaint", "--inpaint-mask", str(small)],
            "tweedie_samples": ["--task", "denoise", "--sigma", "25", "--samples", "2"],
            "foreign_option": ["--task", "sr", "--views", "20"]}[case]  # a CT option, not silently ignored
    out = tmp_path / "out.zarr"
    rc = main(["reconstruct", *args, "--input", str(photo), "-o", str(out), "--nfe", "2", "--threads", "1"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and err.startswith("scorerecon: error:"), err
    assert not out.exists()


def test_opt_in_solvers_are_offered_but_not_run_by_default():
    """dds_tta (test-time adaptation: ~2.5x the cost of dds, no gain measured) runs only on request."""
    from scorerecon.pipelines.tasks.registry import get_task

    for name in ("mri", "ct"):
        task = get_task(name)
        assert "dds_tta" in task.solvers and "dds_tta" in task.opt_in
        assert set(task.opt_in) <= set(task.solvers)
