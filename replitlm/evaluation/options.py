"""YAML (plus `key=value` overrides) as the defaults of an argparse command line, with strict keys.

Keys are the long options without dashes (`batch_size`, `top_p`, ...); an unknown key is an error naming it
and the closest valid one. Flags given on the command line win over the YAML.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from replitlm.suggest import did_you_mean


class OptionsError(ValueError):
    """The options file is missing, malformed or names an unknown option."""


def split_config_argv(argv: list[str]) -> tuple[str | None, list[str], list[str]]:
    """(YAML path, key=value overrides, the remaining argv) from a command line like `X.yaml k=v --flag`."""
    path = argv[0] if argv and argv[0].endswith((".yaml", ".yml")) else None
    rest = argv[1:] if path else argv
    overrides = [a for a in rest if "=" in a and not a.startswith("-")]
    return path, overrides, [a for a in rest if a not in overrides]


def yaml_defaults(parser: argparse.ArgumentParser, path: str, overrides: list[str]) -> dict[str, Any]:
    try:
        raw = OmegaConf.to_container(
            OmegaConf.merge(OmegaConf.load(path), OmegaConf.from_dotlist(overrides)), resolve=True
        )
    except FileNotFoundError as exc:
        raise OptionsError(f"{path}: no such options file") from exc
    except (OmegaConfBaseException, yaml.YAMLError, ValueError) as exc:
        raise OptionsError(f"{path}: {' '.join(str(exc).split())[:300]}") from exc
    if not isinstance(raw, dict):
        raise OptionsError(f"{path}: the top level must be a mapping of options to values")
    actions = {a.dest: a for a in parser._actions if a.dest != "help"}
    defaults = {}
    for key, value in raw.items():
        if key not in actions:
            hint = did_you_mean(str(key), list(actions))
            raise OptionsError(f"{path}: {key}: unknown option{hint}; valid: {', '.join(sorted(actions))}")
        action = actions[key]
        if action.choices is not None and value not in action.choices:
            raise OptionsError(f"{path}: {key}: '{value}' is not one of {sorted(action.choices)}")
        if action.type is Path and value is not None:
            value = Path(value)
        defaults[key] = value
    return defaults
