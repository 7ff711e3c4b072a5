"""``scorerecon train`` refuses bad configs and options in one line before writing anything, and its
``--minutes`` budget stops a run with a consistent, resumable checkpoint whose card says so."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import yaml

from scorerecon.models.data import PatchDataset
from scorerecon.models.train_schema import validate_config
from scorerecon.models.training import STATE_JSON, Trainer, read_loss_log
from scorerecon.pipelines.cli import main
from scorerecon.pipelines.errors import InputError

ROOT = Path(__file__).resolve().parents[1]
TINY_NET = {"kind": "unet", "preset": "tiny", "channels": [8, 16], "attention_levels": [False, False],
            "norm_num_groups": 8, "num_head_channels": 8}


@pytest.fixture
def config(tmp_path: Path) -> dict:
    data = np.random.default_rng(0).random((12, 24, 24)).astype(np.float32)
    nib.save(nib.Nifti1Image(data.transpose(2, 1, 0), np.eye(4)), str(tmp_path / "vol.nii.gz"))
    return {"name": "tiny", "seed": 0, "output": str(tmp_path / "out"),
            "data": {"sources": [str(tmp_path / "vol.nii.gz")], "patch_size": [16, 16], "slice_axis": "z",
                     "augment": {"flip": True, "zoom": {"range": [0.8, 1.25]}}},
            "sde": {"name": "vp"}, "parametrization": "eps", "network": dict(TINY_NET),
            "optimizer": {"lr": 1e-3, "warmup_steps": 1}, "ema": {"decay": 0.9},
            "training": {"steps": 3, "batch_size": 2, "checkpoint_every": 0}}


def _train(tmp_path: Path, config: dict, *options: str) -> tuple[int, Path]:
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(config))
    return main(["train", str(path), "--threads", "1", "-q", *options]), path


@pytest.mark.parametrize("edit, needle", [
    (lambda c: c.__setitem__("trainig", c.pop("training")), "unknown key 'trainig' (did you mean 'training'?)"),
    (lambda c: c["training"].__setitem__("steps", "two"), "training.steps: 'two' is not of type 'integer'"),
    (lambda c: c["training"].__setitem__("steps", 0), "training.steps: 0 is less than the minimum of 1"),
    (lambda c: c["sde"].__setitem__("name", "vpp"), "sde.name: 'vpp' is not one of"),
    (lambda c: c["sde"].__setitem__("sigma_max", 50), "unknown key 'sde.sigma_max'"),
    (lambda c: c["data"].__setitem__("normalisation", {}), "unknown key 'data.normalisation' (did you mean"),
    (lambda c: c["data"]["augment"]["zoom"].__setitem__("rnage", [1, 2]), "'data.augment.zoom.rnage' (did you"),
    (lambda c: c["data"]["augment"].__setitem__("noise", "yes"), "data.augment.noise: expected boolean or object"),
    (lambda c: c.__setitem__("notes", "mine"), "unknown key 'notes'"),
    (lambda c: c["network"].__setitem__("preset", "huge"), "network: unknown UNet preset 'huge'"),
])
def test_bad_configs_are_one_line_errors_and_write_nothing(tmp_path: Path, config: dict, capsys, edit,
                                                           needle: str) -> None:
    edit(config)
    rc, path = _train(tmp_path, config)
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.count("\n") == 0 and "Traceback" not in err
    assert err.startswith(f"scorerecon: error: {path}: ") and needle in err, err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("options, needle", [
    (["--steps", "0"], "--steps must be an integer >= 1, got 0"),
    (["--steps", "two"], "--steps must be an integer >= 1, got 'two'"),
    (["--minutes", "0"], "--minutes must be a number > 0"),
    (["--batch-size", "-4"], "--batch-size must be an integer >= 1"),
])
def test_bad_options_are_one_line_errors_and_write_nothing(tmp_path: Path, config: dict, capsys, options,
                                                           needle: str) -> None:
    rc, _ = _train(tmp_path, config, *options)
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith(f"scorerecon: error: {needle}") and "\n" not in err, err
    assert not (tmp_path / "out").exists()


def test_shipped_configs_pass_the_schema() -> None:
    for path in sorted((ROOT / "workflows" / "config" / "train").glob("*.yaml")):
        validate_config(yaml.safe_load(path.read_text()), path)


def test_the_api_validates_too(config: dict) -> None:
    config["training"]["stepz"] = 5
    with pytest.raises(InputError, match="unknown key 'training.stepz'"):
        Trainer(config)


def test_minutes_budget_stops_early_with_a_consistent_resumable_card(tmp_path: Path, config: dict, capsys) -> None:
    config["training"]["steps"] = 100_000
    rc, _ = _train(tmp_path, config, "--minutes", "0.001")
    assert rc == 0 and "stopped by the 0.001 min budget" in capsys.readouterr().out
    out = tmp_path / "out"
    card = json.loads((out / "model_card.json").read_text())["training"]
    state = json.loads((out / STATE_JSON).read_text())
    assert card["stopped"] == "time_budget" and card["complete"] is False
    assert card["time_budget_s"] == pytest.approx(0.06)
    assert 1 <= card["steps"] < card["steps_planned"] == 100_000 and state["step"] == card["steps"]
    rows = read_loss_log(out)
    assert len(rows) == card["steps"] and not (out / "loss_log.csv").exists()
    rc, _ = _train(tmp_path, config, "--minutes", "0.001")  # the same command continues
    again = json.loads((out / "model_card.json").read_text())["training"]
    assert rc == 0 and again["steps"] > card["steps"] and again["stopped"] == "time_budget"


def test_a_run_that_reaches_its_steps_is_complete(tmp_path: Path, config: dict) -> None:
    rc, _ = _train(tmp_path, config, "--minutes", "60", "--batch-size", "3")
    card = json.loads((tmp_path / "out" / "model_card.json").read_text())["training"]
    assert rc == 0 and card["complete"] is True and card["stopped"] == "steps" and card["steps"] == 3
    assert card["batch_size"] == 3


class _Interrupted(PatchDataset):
    """The real patch dataset, interrupted (as by ctrl-C) on its ``fail_at``-th batch."""

    fail_at = 4

    def sample_batch(self, batch_size, rng):
        self.fail_at -= 1
        if self.fail_at == 0:
            raise KeyboardInterrupt
        return super().sample_batch(batch_size, rng)


def test_an_interrupted_run_never_leaves_a_complete_card(tmp_path: Path, config: dict) -> None:
    config["training"].update(steps=6, checkpoint_every=2)
    trainer = Trainer(config, tmp_path / "out", dataset=_Interrupted(config["data"]))
    with pytest.raises(KeyboardInterrupt):
        trainer.run()
    card = json.loads((tmp_path / "out" / "model_card.json").read_text())["training"]
    assert card["steps"] == 2 and card["complete"] is False
    assert json.loads((tmp_path / "out" / STATE_JSON).read_text())["step"] == 2
