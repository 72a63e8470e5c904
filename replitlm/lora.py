"""LoRA through peft: add adapters, save them in PEFT's format, load them, merge them; quantized base loading.

peft does the adapter arithmetic, the file format and the merge; this module fixes the conventions: adapters
on the attention and MLP projections (module names are the replit / MPT checkpoint names, so an adapter saved
here loads on transformers' MptForCausalLM too), folders written atomically, and clear errors for the
bitsandbytes paths that need a CUDA machine.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from replitlm.checkpoint import CheckpointError, atomic_folder
from replitlm.model import ReplitLMForCausalLM

LORA_TARGETS = ("Wqkv", "out_proj", "up_proj", "down_proj")


def lora_config(
    r: int,
    alpha: float,
    dropout: float,
    target_modules: list[str] | tuple[str, ...],
    modules_to_save: list[str] | None,
    bias: str,
) -> Any:
    """peft's LoraConfig for a causal LM; the defaults users get are LoraSection's (training/config.py)."""
    from peft import LoraConfig, TaskType

    return LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=list(target_modules),
        modules_to_save=modules_to_save,
        bias=bias,
        task_type=TaskType.CAUSAL_LM,
    )


def add_lora(model: nn.Module, config: Any, quantized: bool = False) -> Any:
    """`model` with LoRA adapters: a peft model in which only the adapters (and modules_to_save) train."""
    from peft import get_peft_model, prepare_model_for_kbit_training

    if quantized:  # fp32 norms and input grads, so a 4/8-bit base trains stably
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    try:
        return get_peft_model(model, config)
    except ValueError as exc:  # e.g. "Target modules {'qkv'} not found in the base model"
        raise ValueError(f"lora: {exc}") from exc


def is_peft_model(model: nn.Module) -> bool:
    try:
        from peft import PeftModel
    except ImportError:  # pragma: no cover - peft is a dependency
        return False
    return isinstance(model, PeftModel)


def save_adapter(
    peft_model: Any,
    folder: str | os.PathLike[str],
    state_dict: dict[str, torch.Tensor] | None = None,
    dtype: torch.dtype | None = None,
    tokenizer: Any = None,
    tokenizer_files: dict[str, bytes] | None = None,
) -> Path:
    """`adapter_config.json` + `adapter_model.safetensors` (+ tokenizer), written atomically.

    `state_dict` is the peft model's (full or trainable-only) state dict, e.g. gathered from FSDP shards;
    by default the model's own.
    """
    if state_dict is not None and dtype is not None:
        state_dict = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state_dict.items()}
    if state_dict is not None and any("_fsdp_wrapped_module" in n for n, _ in peft_model.named_modules()):
        peft_model = _unwrapped_twin(peft_model)
    config = peft_model.peft_config[peft_model.active_adapter]
    base = config.base_model_name_or_path
    if base and Path(base).is_dir():  # a local base: record where it is, not where we happened to run from
        config.base_model_name_or_path = str(Path(base).resolve())
    with atomic_folder(folder) as tmp:
        peft_model.save_pretrained(str(tmp), state_dict=state_dict, safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(str(tmp))
        for name, content in (tokenizer_files or {}).items():
            (tmp / name).write_bytes(content)
    return Path(folder)


def _unwrapped_twin(peft_model: Any) -> Any:
    """The same adapters on the same architecture, built on the meta device (no memory).

    peft picks the adapter's tensors out of a state dict by module names, and FSDP1 inserts
    `_fsdp_wrapped_module.` into those names, so an FSDP1-wrapped model would save an empty adapter. The twin
    has the plain names that the gathered state dict uses; the tensors come from that state dict.
    """
    import copy

    from peft import get_peft_model

    base = peft_model.get_base_model()
    with torch.device("meta"):
        twin = type(base)(base.config)
    return get_peft_model(twin, copy.deepcopy(peft_model.peft_config[peft_model.active_adapter]))


def adapter_base(adapter: str | os.PathLike[str]) -> str | None:
    """The base model an adapter folder was trained on (its adapter_config.json), if recorded."""
    import json

    path = Path(adapter) / "adapter_config.json"
    if not path.is_file():
        raise CheckpointError(f"{adapter}: not a PEFT adapter folder (no adapter_config.json)")
    try:
        return json.loads(path.read_text()).get("base_model_name_or_path")
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from exc


def load_adapter(model: nn.Module, adapter: str | os.PathLike[str], trainable: bool = False) -> Any:
    """`model` with the adapter of a folder applied (eval mode unless `trainable`)."""
    from peft import PeftModel

    adapter_base(adapter)  # a clear error for a folder that is not an adapter
    return PeftModel.from_pretrained(model, str(adapter), is_trainable=trainable)


def merge_adapter(model: nn.Module, adapter: str | os.PathLike[str]) -> nn.Module:
    """The base model with the adapter's update added into its weights (a plain model again, no peft)."""
    return load_adapter(model, adapter).merge_and_unload()


def quantization_config(bits: str | None, compute_dtype: torch.dtype = torch.bfloat16) -> Any:
    """A transformers BitsAndBytesConfig for '4bit' (NF4, double quantization) or '8bit'; None for None."""
    if bits is None:
        return None
    if bits not in ("4bit", "8bit"):
        raise ValueError(f"quantize: '{bits}' is not one of ['4bit', '8bit']")
    if not torch.cuda.is_available():
        raise RuntimeError(f"quantize: {bits} weights (bitsandbytes) need a CUDA GPU; none is visible")
    try:
        import bitsandbytes  # noqa: F401
    except ImportError as exc:
        raise ImportError(f"quantize: {bits} needs bitsandbytes: pip install 'replitlm[gpu]'") from exc
    from transformers import BitsAndBytesConfig

    if bits == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=compute_dtype,
    )


def load_for_inference(
    model: str | os.PathLike[str],
    adapter: str | os.PathLike[str] | None = None,
    quantize: str | None = None,
    dtype: torch.dtype | None = None,
    device: str | None = None,
    attn_impl: str | None = None,
) -> nn.Module:
    """A model for generation: a folder or hub id, optionally 8/4-bit (bitsandbytes, CUDA) and with an adapter.

    Defaults: CUDA when available, bfloat16 there and float32 on CPUs. A quantized model is placed on the GPU
    while loading (bitsandbytes) and is not moved afterwards.
    """
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = dtype or (torch.bfloat16 if device.startswith("cuda") else torch.float32)
    extra: dict[str, Any] = {}
    if quantize is not None:
        extra = {"quantization_config": quantization_config(quantize, dtype), "device_map": {"": device}}
    loaded = ReplitLMForCausalLM.from_pretrained(model, attn_impl=attn_impl, dtype=dtype, **extra)
    if adapter is not None:
        loaded = load_adapter(loaded, adapter)
    if quantize is None:
        loaded = loaded.to(device)
    return loaded.eval()
