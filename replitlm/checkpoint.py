"""Checkpoint I/O: strict loading of replit-layout folders and hub ids, and the older ReplitLM layout.

transformers' `from_pretrained` does the heavy lifting (pytorch_model.bin with weights_only, sharded bins,
safetensors, hub download, dtype, device maps). What it does not do is refuse a checkpoint that does not
fit: missing keys are silently re-initialised. Loading a code model whose weights are partly random is never
what a user wants, so here every missing, unexpected or wrongly shaped tensor is an error that names it,
and a file that cannot be read is an error that names the file.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from replitlm.config import ReplitLMConfig

# Older "ReplitLM" checkpoints (model_type replit_lm) name some modules differently.
LEGACY_KEY_MAPPING = {
    r"\.ln_1\.": ".norm_1.",
    r"\.ln_2\.": ".norm_2.",
    r"\.mlp\.mlp_up\.": ".ffn.up_proj.",
    r"\.mlp\.mlp_down\.": ".ffn.down_proj.",
    r"^transformer\.ln_f\.": "transformer.norm_f.",
}

_HUB_KWARGS = ("cache_dir", "force_download", "local_files_only", "token", "revision", "subfolder")


class CheckpointError(RuntimeError):
    """A checkpoint cannot be loaded as it is; the message names the file or the tensors."""


def load_config(
    name_or_path: str | os.PathLike[str],
    attn_impl: str | None = None,
    overrides: dict[str, Any] | None = None,
    **hub_kwargs: Any,
) -> tuple[ReplitLMConfig, bool]:
    """The config of a folder or hub id (either layout), with overrides; also says if it is the old layout."""
    raw, _ = ReplitLMConfig.get_config_dict(str(name_or_path), **hub_kwargs)
    if not raw:
        raise OSError(f"{name_or_path} has no config.json: is it a model folder or hub id?")
    legacy = raw.get("model_type") == "replit_lm" or "mlp_ratio" in raw
    raw = dict(raw)
    for key, value in (overrides or {}).items():
        if key in ("attn_config", "init_config"):
            raw[key] = {**raw.get(key, {}), **value}
        else:
            raw[key] = value
    config = ReplitLMConfig.from_dict(raw)
    if attn_impl is not None:
        config.attn_config["attn_impl"] = attn_impl
        config.validate()
    return config, legacy


def strict_from_pretrained(cls: type, name_or_path: str | os.PathLike[str], *args: Any, **kwargs: Any) -> Any:
    """`cls.from_pretrained` that raises CheckpointError unless every tensor loads into its place."""
    attn_impl = kwargs.pop("attn_impl", None)
    overrides = kwargs.pop("config_overrides", None)
    want_info = kwargs.pop("output_loading_info", False)
    hub_kwargs = {k: kwargs[k] for k in _HUB_KWARGS if k in kwargs}
    config = kwargs.pop("config", None)
    legacy = False
    if config is None:
        config, legacy = load_config(name_or_path, attn_impl, overrides, **hub_kwargs)
    elif attn_impl is not None:
        config.attn_config["attn_impl"] = attn_impl
        config.validate()
    if legacy:
        kwargs.setdefault("key_mapping", LEGACY_KEY_MAPPING)
    # Shape mismatches are collected (and then refused below) instead of failing deep inside a module's
    # load_state_dict with a message that has lost the tensor's full name.
    kwargs.setdefault("ignore_mismatched_sizes", True)
    try:
        model, info = super(cls, cls).from_pretrained(
            name_or_path, *args, config=config, output_loading_info=True, **kwargs
        )
    except (ValueError, ImportError, NotImplementedError, CheckpointError):
        raise
    except Exception as e:  # safetensors / torch.load errors rarely say which file is broken, or how
        culprit = find_unreadable_file(name_or_path)
        if culprit:
            path, why = culprit
            raise CheckpointError(
                f"cannot load weights: {path} is truncated or corrupt ({why}); copy or download it again"
            ) from e
        if isinstance(e, OSError):
            raise
        raise CheckpointError(f"cannot load weights from {name_or_path}: {type(e).__name__}: {e}") from e
    problems = _loading_problems(info, model)
    if problems:
        raise CheckpointError(f"checkpoint {name_or_path} does not fit the model: " + "; ".join(problems))
    return (model, info) if want_info else model


def _loading_problems(info: dict[str, list[Any]], model: Any) -> list[str]:
    problems = []
    if info.get("missing_keys"):
        problems.append(f"missing keys {short_list(sorted(info['missing_keys']))}")
    if info.get("unexpected_keys"):
        problems.append(f"unexpected keys {short_list(sorted(info['unexpected_keys']))}")
    if info.get("mismatched_keys"):
        expected = model.state_dict()
        shapes = [f"{k} (the model expects {tuple(expected[k].shape)})" for k in info["mismatched_keys"]]
        problems.append(f"wrong shapes {short_list(shapes)}: does config.json belong to these weights?")
    if info.get("error_msgs"):
        problems.extend(info["error_msgs"])
    return problems


def short_list(items: list[str], limit: int = 8) -> str:
    shown = ", ".join(map(str, items[:limit]))
    return f"[{shown}{f', ... ({len(items) - limit} more)' if len(items) > limit else ''}]"


def checkpoint_files(folder: str | os.PathLike[str]) -> list[Path]:
    """The weight files of a local HF folder."""
    folder = Path(folder)
    patterns = ("*.safetensors", "pytorch_model*.bin")
    return sorted(p for pattern in patterns for p in folder.glob(pattern))


def find_unreadable_file(folder: str | os.PathLike[str]) -> tuple[Path, str] | None:
    """The first weight file of a local folder that cannot be read in full, and why."""
    if not Path(folder).is_dir():
        return None
    for path in checkpoint_files(folder):
        try:
            if path.suffix == ".safetensors":
                with safe_open(str(path), framework="pt") as f:
                    for key in f.keys():  # noqa: SIM118 - safe_open has no __iter__
                        f.get_slice(key)
            else:
                torch.load(path, map_location="meta", weights_only=True)
        except Exception as e:
            return path, f"{type(e).__name__}: {e}"
    return None


@contextlib.contextmanager
def atomic_folder(folder: str | os.PathLike[str]) -> Iterator[Path]:
    """A temporary folder beside `folder` to write into; renamed to `folder` (replacing it) only on success.

    A reader never sees half a folder: until the rename it holds the old one (or none); a crash leaves only a
    hidden `.name.*` folder behind.
    """
    import shutil
    import tempfile

    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        yield tmp
        _default_permissions(tmp)  # mkdtemp makes it private; the result should be like any other folder
        if folder.exists():
            shutil.rmtree(folder)
        tmp.rename(folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _default_permissions(folder: Path) -> None:
    umask = os.umask(0)
    os.umask(umask)
    folder.chmod(0o777 & ~umask)
    for path in folder.rglob("*"):
        path.chmod((0o777 if path.is_dir() else 0o666) & ~umask)
