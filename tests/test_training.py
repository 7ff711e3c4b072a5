"""Training: DSM learns a Gaussian mixture's mode weights; runs are reproducible and resume exactly;
patches respect held-out slices; ``scorerecon train`` / ``scorerecon sample`` work end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from scorerecon.models.checkpoint import load_score_model
from scorerecon.models.data import PatchDataset
from scorerecon.models.samplers import sample
from scorerecon.models.training import Trainer, read_loss_log
from scorerecon.pipelines.cli import main

ROOT = Path(__file__).resolve().parents[1]
BRAIN = ROOT / "data" / "demo" / "colin27_t1.nii.gz"
TINY_NET = {"kind": "unet", "preset": "tiny", "channels": [8, 16], "attention_levels": [False, False],
            "norm_num_groups": 8, "num_head_channels": 8}
MIXTURE = {"kind": "gaussian_mixture", "means": [[-2.5, -1.5], [2.5, -1.5], [0.0, 2.5]], "stds": 0.35,
           "weights": [0.2, 0.3, 0.5]}





def _patch_config(sources: list[str], steps: int = 8) -> dict:
    return {
        "name": "tiny_brain", "seed": 3,
        "data": {"sources": sources, "patch_size": [16, 16], "slice_axis": "z", "holdout": {"z": [80, 100]},
                 "foreground": {"min_fraction": 0.3}},
        "sde": {"name": "vp"}, "parametrization": "eps", "network": TINY_NET,
        "optimizer": {"lr": 1e-3, "warmup_steps": 2}, "ema": {"decay": 0.9},
        "training": {"steps": steps, "batch_size": 4, "checkpoint_every": 0},
    }


@pytest.fixture(scope="module")
def brain() -> PatchDataset:
    return PatchDataset(_patch_config([str(BRAIN)])["data"])


def test_dsm_reproduces_gaussian_mixture_weights(tmp_path: Path) -> None:
    """A small MLP trained by DSM, sampled with the probability-flow ODE, gets the mode weights right."""
    config = {"name": "mixture", "seed": 0, "data": MIXTURE, "sde": {"name": "vp"}, "parametrization": "eps",
              "network": {"kind": "mlp", "hidden": 128, "layers": 3},
              "optimizer": {"lr": 2e-3, "warmup_steps": 50}, "ema": {"decay": 0.99},
              "training": {"steps": 800, "batch_size": 512, "checkpoint_every": 0}}
    Trainer(config, tmp_path / "mixture").run()
    model = load_score_model(tmp_path / "mixture")
    x = sample(model, (3000, 2), sampler="ode", nfe=100, seed=0).x
    means = torch.tensor(MIXTURE["means"])
    distance, label = torch.cdist(x, means).min(1)
    weights = torch.bincount(label, minlength=3).double() / len(label)
    assert torch.allclose(weights, torch.tensor(MIXTURE["weights"], dtype=torch.float64), atol=0.05), weights
    assert (distance < 4 * 0.35).double().mean() > 0.95  # samples sit on the modes, not between them


def test_patches_avoid_held_out_slices_and_skip_background(brain: PatchDataset) -> None:
    starts = brain._starts[0]["z"]
    assert not np.isin(np.arange(80, 100), starts).any() and len(starts) == 181 - 20
    rng = np.random.default_rng(0)
    batch = brain.sample_batch(32, rng)
    assert batch.shape == (32, 1, 16, 16) and batch.min() >= -1 and batch.max() <= 1
    lo, hi = brain.normalization["values"]
    assert brain.normalization["method"] == "percentile" and hi > lo
    foreground = (batch > -1 + 0.1 * 2).double().flatten(1).mean(1)
    assert (foreground >= 0.3).double().mean() > 0.9


def test_3d_patches_do_not_overlap_held_out_range() -> None:
    config = {**_patch_config([str(BRAIN)])["data"], "patch_size": [8, 8, 8]}
    dataset = PatchDataset(config)
    starts = dataset._starts[0]["z"]
    assert ((starts + 8 <= 80) | (starts >= 100)).all() and 72 in starts and 73 not in starts
    batch = dataset.sample_batch(2, np.random.default_rng(0))
    assert batch.shape == (2, 1, 8, 8, 8)


def test_store_and_nifti_sources_give_the_same_volume(tmp_path: Path, brain: PatchDataset) -> None:
    store = tmp_path / "brain.zarr"
    assert main(["ingest", str(BRAIN), "-o", str(store)]) == 0
    from_store = PatchDataset(_patch_config([str(store)])["data"])
    np.testing.assert_array_equal(from_store.volumes[0].data, brain.volumes[0].data)
    assert from_store.normalization == brain.normalization
    assert from_store.source_files()[0]["sha256"] == brain.source_files()[0]["sha256"]


def test_same_seed_gives_identical_losses(tmp_path: Path, brain: PatchDataset) -> None:
    config = _patch_config([str(BRAIN)], steps=3)
    runs = []
    for name in ("a", "b"):
        trainer = Trainer(config, tmp_path / name, dataset=brain)
        runs.append([trainer.train_step() for _ in range(3)])
    assert runs[0] == runs[1]
    other = Trainer({**config, "seed": 4}, tmp_path / "c", dataset=brain)
    assert [other.train_step() for _ in range(3)] != runs[0]


def test_resume_matches_uninterrupted_run(tmp_path: Path, brain: PatchDataset) -> None:
    config = _patch_config([str(BRAIN)], steps=8)
    straight = Trainer(config, tmp_path / "straight", dataset=brain)
    straight.run()
    first = Trainer(config, tmp_path / "resumed", dataset=brain)
    first.run(until=4)
    assert first.step == 4
    second = Trainer(config, tmp_path / "resumed", dataset=brain, resume=True)
    assert second.step == 4
    second.run()
    assert [r[1] for r in second.log] == [r[1] for r in straight.log]
    for key, value in straight.ema.module.state_dict().items():
        assert torch.equal(value, second.ema.module.state_dict()[key]), key
    for key, value in straight.model.network.state_dict().items():
        assert torch.equal(value, second.model.network.state_dict()[key]), key
    card = json.loads((tmp_path / "resumed" / "model_card.json").read_text())
    assert card["training"]["steps"] == 8 and card["training"]["complete"]


def test_cosine_schedule_warms_up_then_decays_to_the_floor(tmp_path: Path, brain: PatchDataset) -> None:
    """``optimizer.schedule: cosine``: linear warm-up, half-cosine to ``lr * min_lr_ratio`` at the last step;
    the optimizer really runs at that rate (the default stays constant after warm-up)."""
    config = _patch_config([str(BRAIN)], steps=12)
    config["optimizer"] = {"lr": 1e-3, "warmup_steps": 2, "schedule": "cosine", "min_lr_ratio": 0.1}
    trainer = Trainer(config, tmp_path / "cosine", dataset=brain)
    rates = [trainer.lr_at(step) for step in range(13)]
    assert rates[0] == pytest.approx(5e-4) and rates[1] == pytest.approx(1e-3)
    assert rates[7] == pytest.approx(1e-4 + 0.9e-3 * 0.5)  # half-way through the decay
    assert rates[12] == pytest.approx(1e-4) and all(a >= b for a, b in zip(rates[1:-1], rates[2:], strict=True))
    trainer.run(until=7)
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(rates[6])
    constant = Trainer(_patch_config([str(BRAIN)], steps=12), tmp_path / "constant", dataset=brain)
    assert {constant.lr_at(step) for step in range(1, 13)} == {1e-3}


def test_resume_refuses_a_changed_config(tmp_path: Path, brain: PatchDataset) -> None:
    config = _patch_config([str(BRAIN)], steps=2)
    Trainer(config, tmp_path / "run", dataset=brain).run()
    changed = {**config, "optimizer": {"lr": 5e-4}}
    with pytest.raises(Exception, match="cannot resume: config differs .*optimizer"):
        Trainer(changed, tmp_path / "run", dataset=brain, resume=True)


def test_train_and_sample_cli(tmp_path: Path) -> None:
    import yaml

    config = _patch_config([str(BRAIN)], steps=2)
    config["sampling"] = {"sampler": "em", "nfe": 4}
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    ckpt = tmp_path / "ckpt"
    assert main(["train", str(path), "-o", str(ckpt), "-q", "--threads", "1"]) == 0
    model = load_score_model(ckpt)
    card = model.card
    assert card["training"]["steps"] == 2 and card["parametrization"] == "eps"
    assert card["data"]["source_files"][0]["sha256"] and card["data"]["normalization"]["values"]
    assert card["training"]["command"].startswith("scorerecon") and card["training"]["wall_time_s"] >= 0
    assert [row["step"] for row in read_loss_log(ckpt)] == ["1", "2"]
    grid = tmp_path / "grid.png"
    assert main(["sample", str(ckpt), "--n", "4", "-o", str(grid)]) == 0
    assert Image.open(grid).size == (2 * 16 + 3 * 2, 2 * 16 + 3 * 2)
    samples = np.load(grid.with_suffix(".npy"))
    assert samples.shape == (4, 1, 16, 16) and np.isfinite(samples).all()
    record = json.loads(grid.with_suffix(".json").read_text())
    assert record["sampler"] == "em" and record["nfe"] == 4
    # a finished run resumes as a no-op; a config/state mismatch is a one-line error (exit 2)
    assert main(["train", str(path), "-o", str(ckpt), "-q"]) == 0
    (ckpt / "training_state.json").unlink()
    assert main(["train", str(path), "-o", str(ckpt), "-q"]) == 2


class _NegatedConditionDataset:
    """Paired toy data: the clean image is minus the conditioning image (plus a little noise)."""

    channels, cond_channels = 1, 1

    def sample_batch(self, batch_size: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        cond = rng.uniform(-1.0, 1.0, size=(batch_size, 1, 8, 8)).astype(np.float32)
        x0 = -cond + 0.02 * rng.standard_normal(cond.shape).astype(np.float32)
        return torch.from_numpy(x0), torch.from_numpy(cond)

    def describe(self) -> dict:
        return {"kind": "negated_condition", "patch_size": [8, 8]}


def test_conditional_training_learns_the_conditioning(tmp_path: Path) -> None:
    """A dataset returning (x0, cond) trains a conditional net; the card and the loaded model keep it."""
    config = {"name": "conditional", "seed": 0, "data": {"kind": "custom", "patch_size": [8, 8]},
              "sde": {"name": "vp"}, "parametrization": "x0", "network": TINY_NET,
              "optimizer": {"lr": 3e-3, "warmup_steps": 10}, "ema": {"decay": 0.9},
              "training": {"steps": 300, "batch_size": 32, "checkpoint_every": 0}}
    Trainer(config, tmp_path / "cond", dataset=_NegatedConditionDataset()).run()
    model = load_score_model(tmp_path / "cond")
    assert model.card["network"]["cond_channels"] == 1
    cond = _NegatedConditionDataset().sample_batch(16, np.random.default_rng(99))[1]
    x = sample(model, (16, 1, 8, 8), sampler="ddim", nfe=5, seed=0, cond=cond, eta=0.0).x
    error = (x + cond).pow(2).mean() / cond.pow(2).mean()
    assert error < 0.1, float(error)  # the sample follows its condition, far from an unconditional draw (~2)


def test_dataset_kind_must_be_a_project_class() -> None:
    from scorerecon.models.training import make_dataset
    from scorerecon.pipelines.errors import InputError

    with pytest.raises(InputError, match="cannot be imported"):
        make_dataset({"kind": "scorerecon.models.data:NoSuchDataset"})
    with pytest.raises(InputError, match="unknown data kind"):
        make_dataset({"kind": "os:system"})
