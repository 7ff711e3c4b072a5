"""The training YAML's schema: every key known, typed and ranged before any work starts.

A typo (``trainig:``) used to train the defaults silently and an unknown key was copied into the
model card; ``steps: "two"``, ``steps: 0`` or an unknown SDE crashed with a traceback, sometimes
after writing a card. :func:`validate_config` checks a config against a JSON Schema (``jsonschema``,
Draft 2020-12) and raises :class:`~scorerecon.pipelines.errors.InputError` with one line naming the
file and the first offending key, with the closest known key (``difflib``) for a typo.

The ``data`` section is checked by ``kind``: ``patches`` (:mod:`scorerecon.models.data`, with
``augment``: :mod:`scorerecon.models.augment`), ``gaussian_mixture``, and the project's own
dataset classes (``scorerecon.<module>:<Class>``) with the keys each reads; another class's
section is passed through for that class to check. The ``network`` section is expanded by
:func:`~scorerecon.models.networks.normalize_network_config`, whose errors become one line too.
"""

from __future__ import annotations

import difflib
import os
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from scorerecon.errors import InputError
from scorerecon.models.parametrization import PARAMETRIZATIONS
from scorerecon.models.sde import SDES

_NUM = {"type": "number"}
_POS = {"type": "number", "exclusiveMinimum": 0}
_INT_POS = {"type": "integer", "minimum": 1}
_INT_NONNEG = {"type": "integer", "minimum": 0}
_PROB = {"type": "number", "minimum": 0, "maximum": 1}
_PAIR = {"type": "array", "items": _NUM, "minItems": 2, "maxItems": 2}
_STR = {"type": "string", "minLength": 1}
_RANGES = {"type": "object", "additionalProperties": {"type": "array", "items": {"type": "integer"},
                                                      "minItems": 2, "maxItems": 2}}


def _obj(properties: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "additionalProperties": False, "required": list(required)}


_SDE_PARAMS = {"ve": {"sigma_min": _POS, "sigma_max": _POS}, "vp": {"beta_min": _POS, "beta_max": _POS},
               "subvp": {"beta_min": _POS, "beta_max": _POS}}
assert set(_SDE_PARAMS) == set(SDES), "every SDE needs its parameters here"

_AUGMENT = _obj({
    "zoom": {"oneOf": [{"type": "boolean"}, _obj({"range": _PAIR, "prob": _PROB,
                                                  "spacing": {"enum": ["source", "reference"]}})]},
    "flip": {"type": "boolean"}, "rot90": {"type": "boolean"},
    "intensity": {"oneOf": [{"type": "boolean"}, _obj({"gamma": _PAIR, "contrast": _PAIR, "brightness": _PAIR,
                                                       "prob": _PROB})]},
    "noise": {"oneOf": [{"type": "boolean"}, _obj({"std": _PAIR, "prob": _PROB})]},
})

_SOURCE = {"oneOf": [_STR, _obj({"path": _STR, "weight": {"type": "number", "minimum": 0}, "holdout": _RANGES},
                                required=("path",))]}

_PATCHES = _obj({
    "kind": {"const": "patches"},
    "sources": {"type": "array", "items": _SOURCE, "minItems": 1},
    "group": {"type": "string"}, "variable": _STR, "slice_axis": _STR, "channel_dim": {"type": ["string", "null"]},
    "slice_axes": {"type": "array", "items": _STR, "minItems": 1, "uniqueItems": True},
    "patch_size": {"type": "array", "items": _INT_POS, "minItems": 2, "maxItems": 3},
    "holdout": _RANGES, "cache_mb": {"type": "number", "minimum": 0},
    "normalization": _obj({"method": {"enum": ["percentile", "minmax", "fixed"]}, "percentiles": _PAIR,
                           "values": _PAIR, "range": _PAIR, "clip": {"type": "boolean"},
                           "per_source": {"type": "boolean"}}),
    "foreground": _obj({"threshold": _NUM, "min_fraction": _PROB, "max_tries": _INT_POS}),
    "augment": _AUGMENT,
}, required=("sources", "patch_size"))

_MIXTURE = _obj({"kind": {"const": "gaussian_mixture"}, "means": {"type": "array", "minItems": 1},
                 "stds": {"type": ["number", "array"]}, "weights": {"type": "array", "items": _NUM}},
                required=("means",))

_NATURAL = {"kind": _STR, "kodak": {"type": ["string", "null"]}, "holdout": {"type": "array", "items": _STR},
            "skimage": {"type": "array", "items": _STR},
            "patch_size": {"type": "array", "items": _INT_POS, "minItems": 2, "maxItems": 2},
            "photos": _STR, "area_power": {"type": "number", "minimum": 0, "maximum": 1}}
_REMOTE = {"kind": _STR, "root": _STR, "patch_size": {"type": "array", "items": _INT_POS, "minItems": 2, "maxItems": 2},
           "holdout": _RANGES, "margin": _INT_NONNEG}
#: The keys each of the project's own dataset classes reads from ``data``.
DATASET_KEYS: dict[str, dict[str, Any]] = {
    "scorerecon.modalities.natural.datasets:NaturalPatches": _NATURAL,
    "scorerecon.modalities.natural.datasets:SuperResolutionPairs": {**_NATURAL, "scale": _INT_POS},
    "scorerecon.modalities.natural.datasets:LowLightPairs": {
        **_NATURAL, "exposure": _PAIR, "gamma": _PAIR, "peak": _POS, "read_noise": {"type": "number", "minimum": 0},
        "cond_gain": _POS},
    "scorerecon.modalities.optical.datasets:PansharpenDataset": {
        **_REMOTE, "ms": {"type": "array", "items": _STR}, "bands": {"type": "array", "items": _STR}, "pan": _STR,
        "ratio": _INT_POS},
    "scorerecon.modalities.optical.datasets:CloudDataset": {
        **_REMOTE, "scenes": _STR, "probability": _STR, "mask": _STR, "holdout_shapes": _INT_POS,
        "residual": {"type": "boolean"}, "min_gap_days": _INT_NONNEG},
}

_TOP = _obj({
    "name": _STR, "seed": _INT_NONNEG, "output": _STR, "init_from": {"type": ["string", "null"]},
    "data": {"type": "object"},
    "sde": {"type": "object", "properties": {"name": {"enum": sorted(SDES)}}, "required": ["name"]},
    "parametrization": {"enum": list(PARAMETRIZATIONS)},
    "network": {"type": "object", "properties": {"kind": {"enum": ["unet", "mlp"]}}},
    "optimizer": _obj({"lr": _POS, "weight_decay": {"type": "number", "minimum": 0}, "betas": _PAIR,
                       "grad_clip": {"type": ["number", "null"], "exclusiveMinimum": 0},
                       "warmup_steps": _INT_NONNEG, "schedule": {"enum": ["constant", "cosine"]},
                       "min_lr_ratio": {"type": "number", "minimum": 0, "maximum": 1}}),
    "ema": _obj({"decay": _PROB, "warmup": {"type": "boolean"}}),
    "training": _obj({"steps": _INT_POS, "batch_size": _INT_POS,
                      "eps": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
                      "checkpoint_every": _INT_NONNEG, "bf16": {"type": "boolean"}}),
    "sampling": _obj({"sampler": _STR, "nfe": _INT_POS, "eta": {"type": "number", "minimum": 0},
                      "samples": _INT_POS}),
}, required=("data",))


def _data_schema(data: dict[str, Any]) -> dict[str, Any] | None:
    kind = data.get("kind", "patches")
    if kind == "patches":
        return _PATCHES
    if kind == "gaussian_mixture":
        return _MIXTURE
    if kind in DATASET_KEYS:
        return _obj(DATASET_KEYS[kind])
    return None  # another dataset class checks its own keys (make_dataset refuses non-project kinds)


def _where(path: list[Any]) -> str:
    return ".".join(str(p) for p in path) or "the top level"


def _message(error: ValidationError, prefix: list[Any]) -> str:
    where = prefix + list(error.absolute_path)
    if error.validator == "additionalProperties":
        known = sorted(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(known))
        key = extra[0]
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
        hint = f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(known)}"
        return f"unknown key {_where([*where, key])!r} ({hint})"
    if error.validator == "oneOf":  # a value that may be a flag or a mapping (or a path or a mapping)
        for sub in sorted(error.context or [], key=lambda e: len(e.absolute_path)):
            if sub.validator != "type" and isinstance(error.instance, dict):
                return _message(sub, prefix)  # the mapping branch's own error
        kinds = " or ".join(sorted({str(sub.schema.get("type")) for sub in error.context or []}))
        return f"{_where(where)}: expected {kinds}, got {error.instance!r}"
    return f"{_where(where)}: {error.message}"


def _first(errors: list[ValidationError]) -> ValidationError:
    return sorted(errors, key=lambda e: (len(e.absolute_path), [str(p) for p in e.absolute_path]))[0]


def validate_config(config: Any, path: str | os.PathLike | None = None) -> None:
    """Raise a one-line :class:`InputError` naming ``path`` and the first bad key of ``config``."""
    if not isinstance(config, dict):
        raise InputError(path, "training config must be a mapping")
    errors = list(Draft202012Validator(_TOP).iter_errors(config))
    if errors:
        raise InputError(path, _message(_first(errors), []))
    sde = config.get("sde")
    if sde is not None:
        errors = list(Draft202012Validator(_obj({"name": {"enum": sorted(SDES)}, "N": _INT_POS,
                                                 **_SDE_PARAMS[sde["name"]]})).iter_errors(sde))
        if errors:
            raise InputError(path, _message(_first(errors), ["sde"]))
    data = config["data"]
    schema = _data_schema(data)
    if schema is not None:
        errors = list(Draft202012Validator(schema).iter_errors(data))
        if errors:
            raise InputError(path, _message(_first(errors), ["data"]))
    if "network" in config:
        from scorerecon.models.networks import normalize_network_config

        try:
            normalize_network_config(config["network"])
        except (TypeError, ValueError) as exc:
            raise InputError(path, f"network: {exc}") from None


__all__ = ["validate_config", "DATASET_KEYS"]
