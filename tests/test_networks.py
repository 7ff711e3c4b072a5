"""Network presets: they build in 2D and 3D, counts match the documented ones, conditions widen the input."""

from __future__ import annotations

import json

import pytest
import torch

from scorerecon.models.networks import (
    PRESET_PARAMETERS,
    MLPScoreNet,
    build_network,
    count_parameters,
    normalize_network_config,
    unet_config,
)
from scorerecon.models.score_model import NetworkScoreModel, ScoreModel
from scorerecon.models.sde import VPSDE


@pytest.mark.parametrize(("preset", "dims"), sorted(PRESET_PARAMETERS))
def test_preset_parameter_counts_match_docstring(preset: str, dims: int) -> None:
    net = build_network({"preset": preset, "spatial_dims": dims})
    assert count_parameters(net) == PRESET_PARAMETERS[(preset, dims)]
    doc = __import__("scorerecon.models.networks", fromlist=["x"]).__doc__
    assert f"{PRESET_PARAMETERS[(preset, dims)]:,}" in doc


@pytest.mark.parametrize("dims", [2, 3])
def test_tiny_forward_shapes_and_condition_channels(dims: int) -> None:
    size = (16,) * dims
    plain = build_network({"preset": "tiny", "spatial_dims": dims, "data_channels": 2})
    cond = build_network({"preset": "tiny", "spatial_dims": dims, "data_channels": 2, "cond_channels": 3})
    assert plain.conv_in.conv.in_channels == 2 and cond.conv_in.conv.in_channels == 5
    model = NetworkScoreModel(cond, VPSDE(), "eps")
    assert isinstance(model, ScoreModel)
    x, c = torch.randn(2, 2, *size), torch.randn(2, 3, *size)
    with torch.no_grad():
        pred = model.predict(x, torch.tensor([0.3, 0.9]), cond=c)
    assert pred.output.shape == x.shape and pred.score.shape == x.shape


def test_config_is_json_and_rebuilds_the_same_network() -> None:
    config = unet_config("small", spatial_dims=2, data_channels=1, cond_channels=1)
    again = json.loads(json.dumps(config))
    torch.manual_seed(0)
    a = build_network(again)
    torch.manual_seed(0)
    b = build_network(normalize_network_config({"preset": "small", "cond_channels": 1}))
    assert {k: v.shape for k, v in a.state_dict().items()} == {k: v.shape for k, v in b.state_dict().items()}
    assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())


def test_bad_configs_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown UNet preset"):
        unet_config("huge")
    with pytest.raises(ValueError, match="unknown UNet options"):
        unet_config("tiny", chanels=[8, 16])
    with pytest.raises(ValueError, match="unknown network kind"):
        build_network({"kind": "transformer"})


def test_mlp_score_net_uses_the_shared_time_scale() -> None:
    net = build_network({"kind": "mlp", "dim": 2, "hidden": 32, "layers": 2})
    assert isinstance(net, MLPScoreNet)
    model = NetworkScoreModel(net, VPSDE(), "eps")
    x = torch.randn(5, 2)
    out_a = model(x, torch.full((5,), 0.1))
    out_b = model(x, torch.full((5,), 0.9))
    assert out_a.shape == (5, 2) and not torch.allclose(out_a, out_b)  # time reaches the network
