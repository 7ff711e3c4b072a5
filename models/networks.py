"""Score networks: MONAI ``DiffusionModelUNet`` presets (2D and 3D) and a small MLP for points.

Every network here maps ``(x, t_embed)`` to a tensor shaped like the data, where ``t_embed`` is
``t * TIME_SCALE`` (continuous ``t`` in ``[eps, 1]`` stretched to DDPM's 0..999 range by
:class:`~scorerecon.models.score_model.NetworkScoreModel`). A network is described by a
JSON-able config dict (stored in the model card) and rebuilt from it by :func:`build_network`,
so a checkpoint never needs pickled Python objects.

UNet presets (one data channel, no condition channels; counts measured with
``sum(p.numel() for p in net.parameters())``):

============ =================== ========================= ========== =========== ===========
preset       channels            attention levels          res blocks 2D params   3D params
============ =================== ========================= ========== =========== ===========
``tiny``     (16, 32, 64)        none (mid block only)     1          636,465     1,752,177
``small``    (32, 64, 64)        lowest level              1          1,112,801   2,920,289
``base``     (64, 128, 256, 256) two lowest levels         2          26,621,057  69,901,697
============ =================== ========================= ========== =========== ===========

``tiny`` is the CPU-trainable prior (docs/conventions.md section 5: ~0.5 s per batch-32 48² step on two
cores); ``small`` the one docs/conventions.md times on the H100; ``base`` the 26.6 M reference network.
MONAI's middle block is always self-attention, so the lowest level should hold at most a few
hundred tokens (a 64² patch gives 16² = 256 tokens in ``tiny``/``small``).

Condition channels (pan-sharpening, super-resolution, ...) are concatenated to ``x`` by the
score-model wrapper, so ``in_channels = data_channels + cond_channels`` and ``out_channels =
data_channels``.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from monai.networks.nets import DiffusionModelUNet
from monai.networks.nets.diffusion_model_unet import get_timestep_embedding
from torch import nn

Tensor = torch.Tensor

#: MONAI ``DiffusionModelUNet`` keyword arguments of each preset (besides dims and channels).
UNET_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {
        "channels": [16, 32, 64],
        "attention_levels": [False, False, False],
        "num_res_blocks": 1,
        "norm_num_groups": 8,
        "num_head_channels": 32,
    },
    "small": {
        "channels": [32, 64, 64],
        "attention_levels": [False, False, True],
        "num_res_blocks": 1,
        "norm_num_groups": 32,
        "num_head_channels": 32,
    },
    "base": {
        "channels": [64, 128, 256, 256],
        "attention_levels": [False, False, True, True],
        "num_res_blocks": 2,
        "norm_num_groups": 32,
        "num_head_channels": 64,
    },
}

#: Parameter counts measured for one data channel and no condition channels (see module doc).
PRESET_PARAMETERS: dict[tuple[str, int], int] = {
    ("tiny", 2): 636_465,
    ("tiny", 3): 1_752_177,
    ("small", 2): 1_112_801,
    ("small", 3): 2_920_289,
    ("base", 2): 26_621_057,
    ("base", 3): 69_901_697,
}

# UNet keys a config may override; anything else is rejected so typos do not pass silently.
_UNET_KEYS = {"channels", "attention_levels", "num_res_blocks", "norm_num_groups", "num_head_channels",
              "resblock_updown", "norm_eps"}


def unet_config(preset: str = "tiny", spatial_dims: int = 2, data_channels: int = 1, cond_channels: int = 0,
                **overrides: Any) -> dict[str, Any]:
    """The full JSON-able config of a UNet preset (what goes into a model card).

    ``overrides`` replace preset entries (e.g. ``channels=[32, 64, 128]``); the config is
    self-contained, so a later change to a preset never changes what a stored card builds.
    """
    if preset not in UNET_PRESETS:
        raise ValueError(f"unknown UNet preset {preset!r}; expected one of {sorted(UNET_PRESETS)}")
    unknown = set(overrides) - _UNET_KEYS
    if unknown:
        raise ValueError(f"unknown UNet options {sorted(unknown)}; allowed: {sorted(_UNET_KEYS)}")
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
    config = copy.deepcopy(UNET_PRESETS[preset])
    config.update(copy.deepcopy(overrides))
    return {"kind": "unet", "preset": preset, "spatial_dims": int(spatial_dims),
            "data_channels": int(data_channels), "cond_channels": int(cond_channels), **config}


def build_unet(config: dict[str, Any], use_flash_attention: bool | None = None) -> DiffusionModelUNet:
    """A MONAI ``DiffusionModelUNet`` from a :func:`unet_config` dict.

    ``use_flash_attention`` only changes how attention is computed (PyTorch SDPA), never the
    weights; ``None`` means "on when CUDA is available", the docs/conventions.md section 5 speed-up.
    """
    if use_flash_attention is None:
        use_flash_attention = torch.cuda.is_available()
    levels = len(config["channels"])
    return DiffusionModelUNet(
        spatial_dims=config["spatial_dims"],
        in_channels=config["data_channels"] + config.get("cond_channels", 0),
        out_channels=config["data_channels"],
        channels=tuple(config["channels"]),
        attention_levels=tuple(config["attention_levels"]),
        num_res_blocks=config["num_res_blocks"],
        norm_num_groups=config["norm_num_groups"],
        num_head_channels=config.get("num_head_channels", [32] * levels),
        resblock_updown=config.get("resblock_updown", False),
        norm_eps=config.get("norm_eps", 1e-6),
        use_flash_attention=bool(use_flash_attention),
    )


class MLPScoreNet(nn.Module):
    """A residual MLP ``(x, t_embed) -> R^dim`` for low-dimensional point data (toy tests, 2-D mixtures).

    Time enters through MONAI's sinusoidal embedding (the same as the UNet's, so ``t * 999``
    means the same thing to both) followed by a two-layer MLP, added to every hidden layer.
    ``cond_channels`` extra inputs are concatenated to ``x`` like the UNet's condition channels.
    """

    def __init__(self, dim: int = 2, hidden: int = 128, layers: int = 3, time_dim: int = 64,
                 cond_channels: int = 0) -> None:
        super().__init__()
        self.dim, self.time_dim = dim, time_dim
        self.time_embed = nn.Sequential(nn.Linear(time_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.inp = nn.Linear(dim + cond_channels, hidden)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.SiLU(), nn.Linear(hidden, hidden)) for _ in range(layers)
        )
        self.out = nn.Sequential(nn.SiLU(), nn.Linear(hidden, dim))

    def forward(self, x: Tensor, timesteps: Tensor) -> Tensor:
        emb = self.time_embed(get_timestep_embedding(timesteps, self.time_dim).to(x.dtype))
        h = self.inp(x)
        for block in self.blocks:
            h = h + block(h + emb)
        return self.out(h)


def mlp_config(dim: int = 2, hidden: int = 128, layers: int = 3, time_dim: int = 64,
               cond_channels: int = 0) -> dict[str, Any]:
    """The JSON-able config of an :class:`MLPScoreNet`."""
    return {"kind": "mlp", "dim": dim, "hidden": hidden, "layers": layers, "time_dim": time_dim,
            "cond_channels": cond_channels}


def normalize_network_config(config: dict[str, Any]) -> dict[str, Any]:
    """Expand a short config (``{"preset": "tiny"}`` or ``{"kind": "mlp"}``) to the full one.

    A training YAML may name just a preset; the model card always stores the expanded form.
    """
    config = dict(config)
    kind = config.pop("kind", "unet")
    if kind == "unet":
        return unet_config(**config)
    if kind == "mlp":
        return mlp_config(**config)
    raise ValueError(f"unknown network kind {kind!r}; expected 'unet' or 'mlp'")


def build_network(config: dict[str, Any], use_flash_attention: bool | None = None) -> nn.Module:
    """Build a network from a (short or full) JSON-able config, as stored in a model card."""
    config = normalize_network_config(config)
    if config["kind"] == "unet":
        return build_unet(config, use_flash_attention=use_flash_attention)
    return MLPScoreNet(dim=config["dim"], hidden=config["hidden"], layers=config["layers"],
                       time_dim=config["time_dim"], cond_channels=config["cond_channels"])


def count_parameters(module: nn.Module) -> int:
    """Number of parameters (trainable or not) of ``module``."""
    return sum(p.numel() for p in module.parameters())
