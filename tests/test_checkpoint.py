"""Checkpoints: safetensors + card round trip, and refusal of anything that does not match its card."""

from __future__ import annotations

import ast
import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from scorerecon.modalities.io.store import sha256_file
from scorerecon.models.checkpoint import CARD_FILE, WEIGHTS_FILE, load_score_model, save_score_model
from scorerecon.models.networks import build_network, unet_config
from scorerecon.models.score_model import NetworkScoreModel
from scorerecon.models.sde import VESDE
from scorerecon.pipelines.errors import InputError

ROOT = Path(__file__).resolve().parents[1]
TINY = unet_config("tiny", channels=[8, 16], attention_levels=[False, False], norm_num_groups=8,
                   num_head_channels=8)





def _save(directory: Path, seed: int = 0, config: dict = TINY) -> NetworkScoreModel:
    torch.manual_seed(seed)
    model = NetworkScoreModel(build_network(config), VESDE(sigma_max=20.0), "score")
    save_score_model(directory, model, {"sde": model.sde.config(), "parametrization": "score",
                                        "network": config})
    return model


def test_round_trip_gives_identical_outputs(tmp_path: Path) -> None:
    model = _save(tmp_path / "ck").eval()
    loaded = load_score_model(tmp_path / "ck")
    assert loaded.sde.config() == model.sde.config() and loaded.parametrization == "score"
    x, t = torch.randn(2, 1, 16, 16), torch.tensor([0.2, 0.7])
    with torch.no_grad():
        assert torch.equal(model(x, t), loaded(x, t))
    card = json.loads((tmp_path / "ck" / CARD_FILE).read_text())
    assert card["weights"]["sha256"] == sha256_file(tmp_path / "ck" / WEIGHTS_FILE)
    assert load_score_model(tmp_path / "ck" / WEIGHTS_FILE).card == card  # any path inside works


def test_corrupt_weights_are_refused(tmp_path: Path) -> None:
    _save(tmp_path / "ck")
    weights = tmp_path / "ck" / WEIGHTS_FILE
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(InputError, match="sha256 .* does not match .*corrupt or swapped"):
        load_score_model(tmp_path / "ck")


def test_truncated_weights_with_matching_card_sha_are_refused(tmp_path: Path) -> None:
    _save(tmp_path / "ck")
    weights, card_path = tmp_path / "ck" / WEIGHTS_FILE, tmp_path / "ck" / CARD_FILE
    weights.write_bytes(weights.read_bytes()[:100])
    card = json.loads(card_path.read_text())
    card["weights"]["sha256"] = sha256_file(weights)
    card_path.write_text(json.dumps(card))
    with pytest.raises(InputError, match="not a readable safetensors file"):
        load_score_model(tmp_path / "ck")


def test_swapped_weights_are_refused(tmp_path: Path) -> None:
    _save(tmp_path / "a", seed=0)
    _save(tmp_path / "b", seed=1)
    shutil.copy(tmp_path / "b" / WEIGHTS_FILE, tmp_path / "a" / WEIGHTS_FILE)
    with pytest.raises(InputError, match="corrupt or swapped"):
        load_score_model(tmp_path / "a")


def test_missing_card_is_refused(tmp_path: Path) -> None:
    _save(tmp_path / "ck")
    (tmp_path / "ck" / CARD_FILE).unlink()
    with pytest.raises(InputError, match="model card is missing"):
        load_score_model(tmp_path / "ck" / WEIGHTS_FILE)


def test_card_describing_another_network_is_refused(tmp_path: Path) -> None:
    _save(tmp_path / "ck")
    card_path = tmp_path / "ck" / CARD_FILE
    card = json.loads(card_path.read_text())
    card["network"] = {**card["network"], "channels": [16, 32]}  # same names, other shapes
    card_path.write_text(json.dumps(card))
    with pytest.raises(InputError, match="tensor shapes do not match the card's network"):
        load_score_model(tmp_path / "ck")
    card["network"] = unet_config("tiny")  # other depth: other tensor names
    card_path.write_text(json.dumps(card))
    with pytest.raises(InputError, match="tensor names do not match"):
        load_score_model(tmp_path / "ck")


def test_no_pickle_in_model_code() -> None:
    """Checkpoints are safetensors + JSON only: no module here imports pickle or calls torch.load/save."""
    files = [ROOT / "models" / n for n in ("checkpoint.py", "training.py", "networks.py", "data.py")]
    files += [ROOT / "pipelines" / n for n in ("train.py", "sample.py")]
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                assert not {a.name for a in node.names} & {"pickle", "dill", "joblib"}, path.name
            if isinstance(node, ast.ImportFrom):
                assert node.module not in ("pickle", "dill", "joblib"), path.name
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "torch":
                assert node.attr not in ("load", "save"), f"{path.name} calls torch.{node.attr}"


def test_checkpoint_files_are_safetensors_or_text(tmp_path: Path) -> None:
    _save(tmp_path / "ck")
    for path in (tmp_path / "ck").iterdir():
        if path.suffix == ".safetensors":
            with safe_open(str(path), "pt") as handle:
                assert list(handle.keys())
        else:
            assert path.suffix == ".json"
            json.loads(path.read_text())
