"""Checks of a training config that one key's type cannot express: choices, units, cross-field rules; each
error names the key (e.g. `optimizer.lr`) and what to do."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from replitlm.config import MODEL_SIZES, ConfigError, config_for_size
from replitlm.lora import LORA_TARGETS
from replitlm.suggest import did_you_mean
from replitlm.training.schema import DatasetSection, LoaderSection, LoraSection, TrainConfig, TrainConfigError

_OPTIMIZERS = ("decoupled_lionw", "decoupled_adamw")
_SCHEDULERS = ("cosine_with_warmup", "linear_decay_with_warmup", "constant_with_warmup")
_PRECISIONS = ("fp32", "amp_bf16", "amp_fp16")


def validate(config: TrainConfig) -> None:
    m = config.model
    check((m.size is None) != (m.pretrained_model_name_or_path is None), "model", _MODEL_CHOICE)
    if m.size is not None:
        one_of(m.size, tuple(MODEL_SIZES), "model.size")
        try:  # the model's own checks (field names, head counts, attn_config keys), prefixed with the section
            config_for_size(m.size, **{"max_seq_len": config.max_seq_len, **m.overrides()})
        except ConfigError as exc:
            raise TrainConfigError(f"model.{exc}") from exc
    one_of(m.init_device, ("cpu", "meta", "cuda"), "model.init_device")
    one_of(m.pretrained_dtype, ("float32", "bfloat16", "float16"), "model.pretrained_dtype")
    check(m.init_device != "meta" or config.fsdp_config is not None, "model.init_device", _META_NEEDS_FSDP)
    for name in ("max_seq_len", "global_train_batch_size", "device_train_microbatch_size"):
        check(getattr(config, name) > 0, name, "must be a positive integer")
    check(
        config.device_eval_batch_size is None or config.device_eval_batch_size > 0,
        "device_eval_batch_size",
        "must be a positive integer",
    )
    one_of(config.precision, _PRECISIONS, "precision")
    one_of(config.optimizer.name, _OPTIMIZERS, "optimizer.name")
    check(config.optimizer.lr > 0, "optimizer.lr", "must be positive")
    check(config.optimizer.weight_decay >= 0, "optimizer.weight_decay", "must be >= 0")
    betas = config.optimizer.betas
    check(
        len(betas) == 2 and all(0 <= b < 1 for b in betas), "optimizer.betas", "must be two numbers in [0, 1)"
    )
    one_of(config.scheduler.name, _SCHEDULERS, "scheduler.name")
    for path, value in [
        ("max_duration", config.max_duration),
        ("eval_interval", config.eval_interval),
        ("save_interval", config.save_interval),
        ("scheduler.t_warmup", config.scheduler.t_warmup),
        ("scheduler.t_max", config.scheduler.t_max),
    ]:
        _check_time(value, path)
    _check_scheduler_units(config)
    export = config.callbacks.hf_export
    if export is not None:
        one_of(export.dtype, ("float32", "bfloat16", "float16"), "callbacks.hf_export.dtype")
        if export.interval is not None:
            _check_time(export.interval, "callbacks.hf_export.interval")
            check(
                export.interval.endswith("ba"),
                "callbacks.hf_export.interval",
                "must be in batches, e.g. '1000ba'",
            )
    if config.autoresume:
        check(
            config.save_folder is not None, "autoresume", "needs save_folder (where to look for checkpoints)"
        )
        check(config.run_name is not None, "autoresume", "needs run_name (the same name on every restart)")
    if config.algorithms.gradient_clipping is not None:
        clip = config.algorithms.gradient_clipping
        one_of(
            clip.clipping_type, ("norm", "value", "adaptive"), "algorithms.gradient_clipping.clipping_type"
        )
        check(
            clip.clipping_threshold > 0, "algorithms.gradient_clipping.clipping_threshold", "must be positive"
        )
    for name, loader in [("train_loader", config.train_loader), ("eval_loader", config.eval_loader)]:
        if loader is not None:
            _validate_loader(loader, name)
    if config.fsdp_config is not None:
        _validate_fsdp(config.fsdp_config)
    if config.lora is not None:
        _validate_lora(config.lora, config)
    if m.fallback_size is not None:
        check(m.pretrained_model_name_or_path is not None, "model.fallback_size", _FALLBACK_NEEDS_PATH)
        one_of(m.fallback_size, tuple(MODEL_SIZES), "model.fallback_size")


def _validate_loader(loader: LoaderSection, path: str) -> None:
    one_of(loader.name, ("text", "finetuning"), f"{path}.name")
    check(loader.num_workers >= 0, f"{path}.num_workers", "must be >= 0")
    ds = loader.dataset
    if loader.name == "finetuning":
        _validate_finetuning(ds, f"{path}.dataset")
        return
    defaults = DatasetSection()
    for key in _FINETUNING_ONLY:
        check(
            getattr(ds, key) == getattr(defaults, key),
            f"{path}.dataset.{key}",
            f"is only for prompt/response data: set {path}.name=finetuning",
        )
    has_single = ds.local is not None or ds.remote is not None
    check(has_single != bool(ds.streams), f"{path}.dataset", _DATASET_CHOICE)
    for name, stream in (ds.streams or {}).items():
        where = f"{path}.dataset.streams.{name}"
        check(stream.local is not None or stream.remote is not None, where, "needs `local` and/or `remote`")
        check(stream.proportion is None or stream.proportion >= 0, f"{where}.proportion", "must be >= 0")


_FINETUNING_ONLY = ("path", "prompt_template", "prompt_template_no_input", "packing", "overlong", "strict")


def _validate_finetuning(ds: DatasetSection, where: str) -> None:
    from replitlm.data.instruct import InstructError, PromptTemplate

    from_mds = ds.local is not None or ds.remote is not None
    check((ds.path is not None) != from_mds and not ds.streams, where, _FINETUNING_SOURCE)
    one_of(ds.overlong, ("truncate", "drop"), f"{where}.overlong")
    check(
        not (ds.packing and ds.use_sequence_id is False),
        f"{where}.use_sequence_id",
        "packing needs sequence_id, or packed examples would attend to each other",
    )
    defaults = PromptTemplate()
    try:
        PromptTemplate(
            ds.prompt_template or defaults.with_input, ds.prompt_template_no_input or defaults.no_input
        )
    except InstructError as exc:  # "template with_input lacks {input}"
        key = "prompt_template" if "with_input" in str(exc) else "prompt_template_no_input"
        raise TrainConfigError(f"{where}.{key}: {str(exc).split(' ', 2)[2]}") from exc


def _validate_lora(lora: LoraSection, config: TrainConfig) -> None:
    check(lora.r > 0, "lora.r", "must be a positive integer")
    check(lora.alpha > 0, "lora.alpha", "must be positive")
    check(0 <= lora.dropout < 1, "lora.dropout", "must be in [0, 1)")
    check(bool(lora.target_modules), "lora.target_modules", f"name at least one of {list(LORA_TARGETS)}")
    for i, name in enumerate(lora.target_modules):
        one_of(name, LORA_TARGETS, f"lora.target_modules[{i}]")
    one_of(lora.bias, ("none", "all", "lora_only"), "lora.bias")
    if lora.quantize is not None:
        one_of(lora.quantize, ("4bit", "8bit"), "lora.quantize")
        check(
            config.model.size is None, "lora.quantize", "quantizes pretrained weights: set a pretrained model"
        )
    check(
        config.model.init_device != "meta",
        "model.init_device",
        "LoRA adds adapters to built weights: use 'cpu'",
    )
    fsdp1 = config.fsdp_config is not None and os.environ.get("FSDP_VERSION") != "2"
    check(
        not fsdp1 or config.model.pretrained_dtype == "float32",
        "model.pretrained_dtype",
        "LoRA under FSDP1 needs 'float32': FSDP1 flattens each block's frozen and trained tensors into one "
        "dtype, and trained ones stay fp32 (FSDP_VERSION=2 takes a bf16 base)",
    )
    if (
        config.fsdp_config is not None
    ):  # FSDP1 must keep the original parameters to mix frozen and trained ones
        check(
            config.fsdp_config.get("use_orig_params", True) is not False,
            "fsdp_config.use_orig_params",
            "LoRA mixes frozen and trained parameters: FSDP needs use_orig_params true",
        )


def _validate_fsdp(fsdp: dict[str, Any]) -> None:
    from composer.utils.parallelism import FSDP2Config, FSDPConfig  # light: no model code

    valid = {f.name for f in dataclasses.fields(FSDPConfig)} | {
        f.name for f in dataclasses.fields(FSDP2Config)
    }
    for key in fsdp:
        if key not in valid:
            raise TrainConfigError(f"fsdp_config.{key}: unknown key{did_you_mean(key, sorted(valid))}")


def _check_scheduler_units(config: TrainConfig) -> None:
    """Composer's warmup schedulers need t_warmup and t_max in one unit once 'dur' is read as max_duration's
    unit and epochs as batches; it would only say so inside the Trainer, after the model is built."""
    duration = _scheduler_unit(config.max_duration, config.max_duration)
    s = config.scheduler
    warmup, t_max = (_scheduler_unit(t, config.max_duration) for t in (s.t_warmup, s.t_max))
    if warmup != t_max:
        where = "" if s.t_max.endswith("dur") else f" (scheduler.t_max '{s.t_max}')"
        raise TrainConfigError(
            f"scheduler.t_warmup: '{s.t_warmup}' counts {_UNIT_NAMES[warmup]} but the schedule runs in "
            f"{_UNIT_NAMES[t_max]} (max_duration '{config.max_duration}'{where}); Composer needs one unit: "
            f"write t_warmup in {_UNIT_NAMES[t_max]}, or as a fraction of the run (e.g. '0.01dur')"
        )
    check(duration != "sec", "max_duration", "must count batches, epochs, tokens or samples, not seconds")


_UNIT_NAMES = {"ba": "batches", "tok": "tokens", "sp": "samples", "iter": "iterations", "sec": "seconds"}


def _scheduler_unit(value: str, max_duration: str) -> str:
    """The unit Composer's schedulers compare `value` in: 'dur' becomes max_duration's, epochs batches."""
    from composer.core import Time, TimeUnit

    unit = Time.from_timestring(value).unit
    if unit == TimeUnit.DURATION:
        unit = Time.from_timestring(max_duration).unit
    return "ba" if unit == TimeUnit.EPOCH else unit.value


def _check_time(value: str, path: str) -> None:
    from composer.core import Time

    try:
        Time.from_timestring(value)
    except (ValueError, TypeError) as exc:
        raise TrainConfigError(
            f"{path}: '{value}' is not a duration; use a number and a unit, e.g. '1000ba' (batches), "
            "'1ep' (epochs), '10000000tok' (tokens), '5000sp' (samples), '1dur' (fraction of the run)"
        ) from exc


_MODEL_CHOICE = (
    "set exactly one of `size` (a preset: tiny, 125m, 350m, 1b, 3b) or `pretrained_model_name_or_path`"
)
_META_NEEDS_FSDP = "'meta' builds the model without memory and needs fsdp_config to initialise it; use 'cpu'"
_FALLBACK_NEEDS_PATH = "is the preset used when pretrained_model_name_or_path is missing: set that too"
_FINETUNING_SOURCE = (
    "set either `path` (a .json/.jsonl file, a datasets folder or a hub id) or `local`/`remote` (MDS from "
    "data_prep/convert_instruct_dataset.py), not both; `streams` is for text loaders"
)
_DATASET_CHOICE = (
    "set either `local`/`remote` (one dataset) or `streams` (a mixture), not both and not neither"
)


def check(ok: bool, path: str, problem: str) -> None:
    if not ok:
        raise TrainConfigError(f"{path}: {problem}")


def one_of(value: str, choices: tuple[str, ...], path: str) -> None:
    check(value in choices, path, f"'{value}' is not one of {list(choices)}{did_you_mean(value, choices)}")


def key_path(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


def describe(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"[:80]


def validate_for_machine(config: TrainConfig, on_gpu: bool, world_size: int | None = None) -> None:
    """The checks that depend on where the run starts: a GPU or not, and (once the process group exists,
    `world_size`) how many processes. build_trainer calls it before and after starting distributed."""
    if not on_gpu:
        check(
            config.precision == "fp32",
            "precision",
            f"{config.precision} needs a GPU (Composer trains in fp32 on CPUs); use fp32",
        )
        check(
            config.model.pretrained_dtype == "float32",
            "model.pretrained_dtype",
            f"{config.model.pretrained_dtype} weights need amp on a GPU; use float32 on CPUs",
        )
        check(
            config.model.init_device != "meta",
            "model.init_device",
            "'meta' initialises on the GPU after sharding; use 'cpu'",
        )
    if config.lora is not None and config.lora.quantize is not None:
        check(
            config.fsdp_config is None,
            "lora.quantize",
            "a 4/8-bit base trains on one GPU per process (DDP), not FSDP",
        )
    fsdp1 = config.fsdp_config is not None and os.environ.get("FSDP_VERSION") != "2"
    if fsdp1 and config.lora is not None and world_size == 1:
        raise TrainConfigError(
            "fsdp_config: LoRA under FSDP1 in a single process fails in torch 2.7 (NO_SHARD with frozen "
            "parameters, pytorch#151223); one process needs no sharding: remove fsdp_config, or set FSDP_VERSION=2"
        )
