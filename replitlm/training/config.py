"""The training config: a YAML file plus `key=value` overrides (omegaconf) → typed, validated dataclasses.

Every key at every level is checked before anything heavy is imported or built: an unknown key is an error
naming its full path and the closest valid key. A top-level `variables:` section holds free-form values for
`${...}` interpolation only. The sections are in replitlm/training/schema.py (imported here, so
`replitlm.training.config` offers them too) and the cross-field checks in replitlm/training/validation.py.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from replitlm.config import MODEL_FIELDS
from replitlm.hub import looks_like_hub_id
from replitlm.suggest import did_you_mean
from replitlm.training.schema import (
    DatasetSection,
    LoaderSection,
    LoraSection,
    ModelSection,
    SchedulerSection,
    TrainConfig,
    TrainConfigError,
)
from replitlm.training.validation import describe, key_path, validate

# The schema's names are offered here too: load_train_config and the sections users read from one place.
__all__ = [
    "DatasetSection",
    "LoaderSection",
    "LoraSection",
    "ModelSection",
    "SchedulerSection",
    "TrainConfig",
    "TrainConfigError",
    "build_dataclass",
    "load_train_config",
]


def load_train_config(path: str | Path | None, overrides: list[str] | tuple[str, ...] = ()) -> TrainConfig:
    """Read a YAML (or nothing) plus `a.b=value` overrides, resolve `${...}`, and build a validated TrainConfig."""
    try:
        base = OmegaConf.load(path) if path is not None else OmegaConf.create()
        merged = OmegaConf.merge(base, OmegaConf.from_dotlist(list(overrides)))
        raw = OmegaConf.to_container(merged, resolve=True)
    except FileNotFoundError as exc:
        raise TrainConfigError(f"{path}: no such config file{_shipped_yamls()}") from exc
    except (OmegaConfBaseException, yaml.YAMLError, ValueError) as exc:  # syntax errors, bad interpolations
        first = " ".join(str(exc).split())[:300]
        raise TrainConfigError(f"{path}: {first}") from exc
    if not isinstance(raw, dict):
        raise TrainConfigError(f"{path}: the top level must be a mapping of keys to values")
    config = build_dataclass(TrainConfig, raw, "")
    validate(config)
    _resolve_sources(config)
    return config


def _shipped_yamls() -> str:
    """'; YAMLs here: ...' listing the training YAMLs under ./yamls (where the README's commands run)."""
    found = sorted(str(p) for p in Path("yamls").rglob("*.yaml") if p.parts[1:2] != ("eval",))
    return f"; the YAMLs here: {', '.join(found)}" if found else ""


REPLIT_TOKENIZER = "replit/replit-code-v1-3b"


def _resolve_sources(config: TrainConfig) -> None:
    """Apply `model.fallback_size` and the tokenizer default, so later code sees one model and one tokenizer."""
    m = config.model
    name = m.pretrained_model_name_or_path
    if m.fallback_size is not None and not Path(name).exists() and not looks_like_hub_id(name):
        print(
            f"model: {m.pretrained_model_name_or_path} does not exist; starting from a random "
            f"'{m.fallback_size}' model (model.fallback_size)",
            flush=True,
        )
        m.size, m.pretrained_model_name_or_path = m.fallback_size, None
    if config.tokenizer.name is None:
        folder = m.pretrained_model_name_or_path
        has_own = folder is not None and Path(folder, "spiece.model").is_file()
        config.tokenizer.name = folder if has_own else REPLIT_TOKENIZER


def build_dataclass(cls: type, raw: Any, path: str) -> Any:
    """A dataclass from a dict, recursively, checking keys and value types; errors name the key's path."""
    where = path or "the config"
    if not isinstance(raw, dict):
        raise TrainConfigError(f"{where}: expected a mapping of keys, got {describe(raw)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    extra = {}
    for key in raw:
        if key not in fields:
            if cls is ModelSection and key in MODEL_FIELDS:
                extra[key] = raw[key]  # an explicit model field: an override of the preset / checkpoint
                continue
            valid = list(fields) + (list(MODEL_FIELDS) if cls is ModelSection else [])
            raise TrainConfigError(f"{key_path(path, key)}: unknown key{did_you_mean(str(key), valid)}")
    missing = [
        name
        for name, f in fields.items()
        if name not in raw and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise TrainConfigError(f"{key_path(path, missing[0])}: required key is missing")
    values = {
        key: _coerce(hints[key], value, key_path(path, key)) for key, value in raw.items() if key in fields
    }
    built = cls(**values)
    if extra:
        built.config_overrides = {**extra, **built.config_overrides}
    return built


def _coerce(hint: Any, value: Any, path: str) -> Any:
    if hint is Any:
        return value
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (hint,) = [a for a in args if a is not type(None)]
        origin, args = typing.get_origin(hint), typing.get_args(hint)
    if value is None:
        raise TrainConfigError(f"{path}: must not be null")
    if dataclasses.is_dataclass(hint):
        return build_dataclass(hint, value, path)
    if origin is dict:
        if not isinstance(value, dict):
            raise TrainConfigError(f"{path}: expected a mapping, got {describe(value)}")
        inner = args[1] if args else Any
        return {k: _coerce(inner, v, f"{path}.{k}") for k, v in value.items()}
    if origin is list:
        if not isinstance(value, list):
            raise TrainConfigError(f"{path}: expected a list, got {describe(value)}")
        return [_coerce(args[0], v, f"{path}[{i}]") for i, v in enumerate(value)]
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if (hint in (int, float) and isinstance(value, bool)) or not isinstance(value, hint):
        raise TrainConfigError(f"{path}: expected {hint.__name__}, got {describe(value)}")
    return value
