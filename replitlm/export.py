"""Exports: a model's weights as a `save_pretrained` folder (atomically), and a Composer checkpoint of the
training job as a Hugging Face folder, or, for a LoRA run, as a PEFT adapter folder.

This sits above the model and LoRA (it builds the model to write it); low-level loading and atomic folders are
in replitlm.checkpoint, below both.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from replitlm.checkpoint import CheckpointError, atomic_folder, short_list
from replitlm.config import ReplitLMConfig
from replitlm.lora import save_adapter
from replitlm.model import ReplitLMForCausalLM


def save_pretrained_atomic(
    config: ReplitLMConfig,
    weights: dict[str, torch.Tensor],
    folder: str | os.PathLike[str],
    dtype: torch.dtype = torch.float32,
    tokenizer: Any = None,
    tokenizer_files: dict[str, bytes] | None = None,
) -> Path:
    """Write `weights` as a `save_pretrained` folder (+ tokenizer), via a temporary folder renamed into place."""
    with torch.device("meta"):
        model = ReplitLMForCausalLM(config)
    result = model.load_state_dict({k: v.to(dtype) for k, v in weights.items()}, strict=False, assign=True)
    if result.missing_keys or result.unexpected_keys:
        raise CheckpointError(
            f"the weights do not fit the config: missing {short_list(result.missing_keys)}, "
            f"unexpected {short_list(result.unexpected_keys)}"
        )
    with atomic_folder(folder) as tmp:
        model.save_pretrained(tmp)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        for name, content in (tokenizer_files or {}).items():
            (tmp / name).write_bytes(content)
    return folder


def read_composer_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The model weights and HF metadata of a Composer checkpoint: a full `.pt` file or a sharded folder.

    Composer checkpoints are pickles (a `.pt` file, or the non-tensor parts of a sharded one): load only
    checkpoints you trust. Returns {"model": {name: tensor}, "integrations": {...}}.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint file or folder")
    try:
        if path.is_dir():
            from torch.distributed.checkpoint.state_dict_loader import _load_state_dict_from_keys

            state = _load_state_dict_from_keys({"state.model", "state.integrations"}, checkpoint_id=str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
    except Exception as e:
        raise CheckpointError(f"{path}: not a readable Composer checkpoint ({type(e).__name__}: {e})") from e
    inner = state.get("state", {}) if isinstance(state, dict) else {}
    if "model" not in inner or "huggingface" not in inner.get("integrations", {}):
        raise CheckpointError(
            f"{path}: a Composer checkpoint of this project's trainer is expected (state.model and "
            "state.integrations.huggingface); was it written by train/train.py?"
        )
    return {"model": inner["model"], "integrations": inner["integrations"]}


def composer_to_hf(
    checkpoint: str | os.PathLike[str], out: str | os.PathLike[str], dtype: torch.dtype = torch.float32
) -> Path:
    """Convert a Composer checkpoint (full or sharded) from train/train.py into an HF folder with its tokenizer.

    The checkpoint of a LoRA run holds the adapter only: it becomes a PEFT adapter folder.
    """
    state = read_composer_checkpoint(checkpoint)
    meta = state["integrations"]["huggingface"]
    config = ReplitLMConfig.from_dict(meta["model"]["config"]["content"])
    prefix = "model."
    weights = {k[len(prefix) :]: v for k, v in state["model"].items() if k.startswith(prefix)}
    if "peft_config" in meta["model"]:
        return _adapter_from_checkpoint(config, meta, weights, out, dtype)
    return save_pretrained_atomic(config, weights, out, dtype, tokenizer_files=_tokenizer_files(meta))


def _adapter_from_checkpoint(
    config: ReplitLMConfig,
    meta: dict[str, Any],
    weights: dict[str, torch.Tensor],
    out: Any,
    dtype: torch.dtype,
) -> Path:
    """The adapter of a LoRA checkpoint in PEFT's format: peft itself names the tensors, on a weightless base."""
    from peft import get_peft_config, get_peft_model

    peft_config = get_peft_config(meta["model"]["peft_config"]["content"])
    with torch.device("meta"):
        base = ReplitLMForCausalLM(config)
    base.name_or_path = peft_config.base_model_name_or_path  # kept in adapter_config.json
    peft_model = get_peft_model(base, peft_config)
    result = peft_model.load_state_dict(weights, strict=False, assign=True)
    if result.unexpected_keys:
        raise CheckpointError(
            f"the adapter does not fit its config: unexpected {short_list(result.unexpected_keys)}"
        )
    return save_adapter(peft_model, out, weights, dtype, tokenizer_files=_tokenizer_files(meta))


def _tokenizer_files(meta: dict[str, Any]) -> dict[str, bytes]:
    """Composer stores tokenizer files by kind (json → object, txt → lines, .model → proto bytes)."""
    import json

    files = {}
    for name, entry in meta.get("tokenizer", {}).items():
        content, ext = entry["content"], entry["file_extension"]
        if ext == ".json":
            files[name] = json.dumps(content, indent=2).encode()
        elif ext == ".txt":
            files[name] = "\n".join(content).encode()
        elif isinstance(content, bytes):
            files[name] = content
        else:
            files[name] = str(content).encode()
    return files
