"""The training config: a YAML file plus `key=value` overrides (omegaconf) → typed, validated dataclasses.

The shape follows llm-foundry's YAMLs (top-level `max_seq_len`, `global_train_batch_size`, ..., and sections
`model`, `tokenizer`, `train_loader`, ...) so its users feel at home. Every key at every level is checked
before anything heavy is imported or built: an unknown key is an error naming its full path and the closest
valid key. A top-level `variables:` section holds free-form values for `${...}` interpolation only.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from replitlm.config import MODEL_FIELDS, MODEL_SIZES, ConfigError, config_for_size
from replitlm.hub import looks_like_hub_id
from replitlm.lora import LORA_TARGETS
from replitlm.suggest import did_you_mean


class TrainConfigError(ValueError):
    """The training config is invalid; the message names the key (e.g. `optimizer.lr`) and the fix."""


# -- sections ------------------------------------------------------------------------------------------------
@dataclass
class ModelSection:
    # One of: a preset size (tiny | 125m | 350m | 1b | 3b), or a pretrained folder / hub id. Any ReplitLMConfig
    # field written directly in the section (d_model, attn_config, ...) overrides the preset or checkpoint.
    size: str | None = None
    pretrained_model_name_or_path: str | None = None
    # With a local pretrained_model_name_or_path (not a hub id): the preset to use while that folder does not exist
    # (e.g. a smoke test that fine-tunes an earlier run's export when there is one, else a random tiny model).
    fallback_size: str | None = None
    # 'meta': build without memory and initialise after FSDP shards it (needs fsdp_config); 'cpu' otherwise.
    init_device: str = "cpu"
    config_overrides: dict[str, Any] = field(default_factory=dict)
    # weights dtype when loading a pretrained model (fp32 keeps master weights exact under amp_bf16)
    pretrained_dtype: str = "float32"

    def overrides(self) -> dict[str, Any]:
        return dict(self.config_overrides)


@dataclass
class TokenizerSection:
    # A folder, a hub id, or a SentencePiece .model file. null: the pretrained model's folder when it holds a
    # tokenizer, else replit/replit-code-v1-3b's.
    name: str | None = None


@dataclass
class StreamSection:
    local: str | None = None
    remote: str | None = None
    split: str | None = None
    proportion: float | None = None
    repeat: float | None = None
    choose: int | None = None


@dataclass
class DatasetSection:
    # One dataset (local and/or remote), or several `streams` mixed by proportion / repeat / choose.
    local: str | None = None
    remote: str | None = None
    split: str | None = None
    streams: dict[str, StreamSection] | None = None
    shuffle: bool = True
    shuffle_seed: int = 9176
    shuffle_algo: str = "py1e"
    shuffle_block_size: int | None = None
    num_canonical_nodes: int | None = None
    predownload: int | None = None
    cache_limit: str | None = None
    download_retry: int = 2
    download_timeout: float = 60.0
    epoch_size: int | None = None
    # Feed the shards' per-token `sequence_id` to the model (attention stops at document boundaries);
    # null = when the model's attn_config.attn_uses_sequence_id is true.
    use_sequence_id: bool | None = None
    # -- `name: finetuning` only: prompt/response examples, loss on the response tokens ---------------------
    # Instead of local/remote MDS (from data_prep/convert_instruct_dataset.py): a .json/.jsonl(.gz) file of
    # Alpaca (instruction, input, output) or prompt/response records, a `datasets` folder, or a hub id.
    path: str | None = None
    prompt_template: str | None = None  # Alpaca records; needs {instruction} and {input}; null: Alpaca's
    prompt_template_no_input: str | None = None  # for records without an input; needs {instruction}
    packing: bool = False  # several examples per sequence, kept apart by sequence_id (attention and ALiBi)
    overlong: str = "truncate"  # longer than max_seq_len: truncate (cut the response's end) | drop
    strict: bool = False  # stop at the first bad record; by default bad records are skipped and listed


@dataclass
class LoaderSection:
    # text: packed token shards from data_prep/convert_code_dataset.py (loss on every token);
    # finetuning: prompt/response examples (loss on the response only, EOS appended)
    name: str = "text"
    dataset: DatasetSection = field(default_factory=DatasetSection)
    drop_last: bool = True
    num_workers: int = 0
    pin_memory: bool = True
    prefetch_factor: int | None = None
    persistent_workers: bool = False
    timeout: float = 0


@dataclass
class OptimizerSection:
    name: str = "decoupled_lionw"  # decoupled_lionw | decoupled_adamw
    lr: float = 2.0e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.99])
    weight_decay: float = 0.0
    eps: float = 1.0e-8  # decoupled_adamw only


@dataclass
class SchedulerSection:
    name: str = "cosine_with_warmup"  # cosine_with_warmup | linear_decay_with_warmup | constant_with_warmup
    t_warmup: str = "100ba"
    alpha_f: float = 0.0  # final LR as a fraction of the peak (cosine, linear); Composer's default
    t_max: str = "1dur"


@dataclass
class GradientClippingSection:
    clipping_type: str = "norm"  # norm | value | adaptive
    clipping_threshold: float = 1.0


@dataclass
class AlgorithmsSection:
    gradient_clipping: GradientClippingSection | None = None


@dataclass
class WandBSection:
    project: str | None = None
    entity: str | None = None
    group: str | None = None
    name: str | None = None
    tags: list[str] | None = None
    log_artifacts: bool = False
    init_kwargs: dict[str, Any] | None = None


@dataclass
class TensorboardSection:
    log_dir: str | None = None
    flush_interval: int = 100


@dataclass
class LoggersSection:
    wandb: WandBSection | None = None
    tensorboard: TensorboardSection | None = None


@dataclass
class SpeedMonitorSection:
    window_size: int = 10
    gpu_flops_available: float | None = None  # null: Composer looks the card up (A100, H100, ...)


@dataclass
class EmptySection:
    pass


@dataclass
class HFExportSection:
    save_folder: str = "{run_name}/hf"  # '{run_name}' is filled in; an absolute path or one under the cwd
    interval: str | None = (
        None  # also export every N batches ('1000ba') to <save_folder>-ba<N>; null: at the end
    )
    dtype: str = "float32"  # float32 | bfloat16 | float16: the dtype of the exported weights


@dataclass
class CallbacksSection:
    speed_monitor: SpeedMonitorSection | None = field(default_factory=SpeedMonitorSection)
    lr_monitor: EmptySection | None = field(default_factory=EmptySection)
    memory_monitor: EmptySection | None = None
    hf_export: HFExportSection | None = None


@dataclass
class LoraSection:
    """LoRA adapters through peft: only the adapters (and `modules_to_save`) train; the base stays frozen."""

    r: int = 8  # rank of each adapter
    alpha: float = 16  # the update is scaled by alpha / r
    dropout: float = 0.05  # on the adapter's input
    target_modules: list[str] = field(default_factory=lambda: list(LORA_TARGETS))
    modules_to_save: list[str] | None = None  # modules trained in full and saved with the adapter (e.g. wte)
    bias: str = "none"  # none | all | lora_only: which biases train (replit has none)
    quantize: str | None = None  # null | 4bit (QLoRA: NF4 base through bitsandbytes, CUDA only) | 8bit


@dataclass
class TrainConfig:
    model: ModelSection
    train_loader: LoaderSection
    max_duration: str
    max_seq_len: int = 2048
    global_train_batch_size: int = 8
    device_train_microbatch_size: int = 1
    device_eval_batch_size: int | None = None  # default: device_train_microbatch_size
    tokenizer: TokenizerSection = field(default_factory=TokenizerSection)
    eval_loader: LoaderSection | None = None
    eval_interval: str = "1000ba"
    eval_subset_num_batches: int = -1
    optimizer: OptimizerSection = field(default_factory=OptimizerSection)
    scheduler: SchedulerSection = field(default_factory=SchedulerSection)
    algorithms: AlgorithmsSection = field(default_factory=AlgorithmsSection)
    precision: str = "amp_bf16"  # fp32 | amp_bf16 (amp_fp16 also accepted)
    fsdp_config: dict[str, Any] | None = None
    lora: LoraSection | None = None  # null: full fine-tuning (or pre-training); a section: LoRA through peft
    seed: int = 17
    run_name: str | None = None
    save_folder: str | None = None
    save_interval: str = "1000ba"
    save_num_checkpoints_to_keep: int = -1
    save_overwrite: bool = False
    save_weights_only: bool = False
    autoresume: bool = False
    load_path: str | None = None
    load_weights_only: bool = False
    loggers: LoggersSection = field(default_factory=LoggersSection)
    callbacks: CallbacksSection = field(default_factory=CallbacksSection)
    progress_bar: bool = True
    log_to_console: bool = False
    console_log_interval: str = "1ba"
    python_log_level: str | None = None
    dist_timeout: float = 600.0
    device: str | None = None  # null: gpu when available, else cpu
    variables: dict[str, Any] = field(default_factory=dict)


# -- loading -------------------------------------------------------------------------------------------------
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
        raise TrainConfigError(f"{where}: expected a mapping of keys, got {_describe(raw)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    extra = {}
    for key in raw:
        if key not in fields:
            if cls is ModelSection and key in MODEL_FIELDS:
                extra[key] = raw[key]  # an explicit model field: an override of the preset / checkpoint
                continue
            valid = list(fields) + (list(MODEL_FIELDS) if cls is ModelSection else [])
            raise TrainConfigError(f"{_join(path, key)}: unknown key{did_you_mean(str(key), valid)}")
    missing = [
        name
        for name, f in fields.items()
        if name not in raw and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise TrainConfigError(f"{_join(path, missing[0])}: required key is missing")
    values = {
        key: _coerce(hints[key], value, _join(path, key)) for key, value in raw.items() if key in fields
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
            raise TrainConfigError(f"{path}: expected a mapping, got {_describe(value)}")
        inner = args[1] if args else Any
        return {k: _coerce(inner, v, f"{path}.{k}") for k, v in value.items()}
    if origin is list:
        if not isinstance(value, list):
            raise TrainConfigError(f"{path}: expected a list, got {_describe(value)}")
        return [_coerce(args[0], v, f"{path}[{i}]") for i, v in enumerate(value)]
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if (hint in (int, float) and isinstance(value, bool)) or not isinstance(value, hint):
        raise TrainConfigError(f"{path}: expected {hint.__name__}, got {_describe(value)}")
    return value


# -- cross-field checks --------------------------------------------------------------------------------------
_OPTIMIZERS = ("decoupled_lionw", "decoupled_adamw")
_SCHEDULERS = ("cosine_with_warmup", "linear_decay_with_warmup", "constant_with_warmup")
_PRECISIONS = ("fp32", "amp_bf16", "amp_fp16")


def validate(config: TrainConfig) -> None:
    m = config.model
    _check((m.size is None) != (m.pretrained_model_name_or_path is None), "model", _MODEL_CHOICE)
    if m.size is not None:
        _one_of(m.size, tuple(MODEL_SIZES), "model.size")
        try:  # the model's own checks (field names, head counts, attn_config keys), prefixed with the section
            config_for_size(m.size, **{"max_seq_len": config.max_seq_len, **m.overrides()})
        except ConfigError as exc:
            raise TrainConfigError(f"model.{exc}") from exc
    _one_of(m.init_device, ("cpu", "meta", "cuda"), "model.init_device")
    _one_of(m.pretrained_dtype, ("float32", "bfloat16", "float16"), "model.pretrained_dtype")
    _check(m.init_device != "meta" or config.fsdp_config is not None, "model.init_device", _META_NEEDS_FSDP)
    for name in ("max_seq_len", "global_train_batch_size", "device_train_microbatch_size"):
        _check(getattr(config, name) > 0, name, "must be a positive integer")
    _check(
        config.device_eval_batch_size is None or config.device_eval_batch_size > 0,
        "device_eval_batch_size",
        "must be a positive integer",
    )
    _one_of(config.precision, _PRECISIONS, "precision")
    _one_of(config.optimizer.name, _OPTIMIZERS, "optimizer.name")
    _check(config.optimizer.lr > 0, "optimizer.lr", "must be positive")
    _check(config.optimizer.weight_decay >= 0, "optimizer.weight_decay", "must be >= 0")
    betas = config.optimizer.betas
    _check(
        len(betas) == 2 and all(0 <= b < 1 for b in betas), "optimizer.betas", "must be two numbers in [0, 1)"
    )
    _one_of(config.scheduler.name, _SCHEDULERS, "scheduler.name")
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
        _one_of(export.dtype, ("float32", "bfloat16", "float16"), "callbacks.hf_export.dtype")
        if export.interval is not None:
            _check_time(export.interval, "callbacks.hf_export.interval")
            _check(
                export.interval.endswith("ba"),
                "callbacks.hf_export.interval",
                "must be in batches, e.g. '1000ba'",
            )
    if config.autoresume:
        _check(
            config.save_folder is not None, "autoresume", "needs save_folder (where to look for checkpoints)"
        )
        _check(config.run_name is not None, "autoresume", "needs run_name (the same name on every restart)")
    if config.algorithms.gradient_clipping is not None:
        clip = config.algorithms.gradient_clipping
        _one_of(
            clip.clipping_type, ("norm", "value", "adaptive"), "algorithms.gradient_clipping.clipping_type"
        )
        _check(
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
        _check(m.pretrained_model_name_or_path is not None, "model.fallback_size", _FALLBACK_NEEDS_PATH)
        _one_of(m.fallback_size, tuple(MODEL_SIZES), "model.fallback_size")


def _validate_loader(loader: LoaderSection, path: str) -> None:
    _one_of(loader.name, ("text", "finetuning"), f"{path}.name")
    _check(loader.num_workers >= 0, f"{path}.num_workers", "must be >= 0")
    ds = loader.dataset
    if loader.name == "finetuning":
        _validate_finetuning(ds, f"{path}.dataset")
        return
    defaults = DatasetSection()
    for key in _FINETUNING_ONLY:
        _check(
            getattr(ds, key) == getattr(defaults, key),
            f"{path}.dataset.{key}",
            f"is only for prompt/response data: set {path}.name=finetuning",
        )
    has_single = ds.local is not None or ds.remote is not None
    _check(has_single != bool(ds.streams), f"{path}.dataset", _DATASET_CHOICE)
    for name, stream in (ds.streams or {}).items():
        where = f"{path}.dataset.streams.{name}"
        _check(stream.local is not None or stream.remote is not None, where, "needs `local` and/or `remote`")
        _check(stream.proportion is None or stream.proportion >= 0, f"{where}.proportion", "must be >= 0")


_FINETUNING_ONLY = ("path", "prompt_template", "prompt_template_no_input", "packing", "overlong", "strict")


def _validate_finetuning(ds: DatasetSection, where: str) -> None:
    from replitlm.data.instruct import InstructError, PromptTemplate

    from_mds = ds.local is not None or ds.remote is not None
    _check((ds.path is not None) != from_mds and not ds.streams, where, _FINETUNING_SOURCE)
    _one_of(ds.overlong, ("truncate", "drop"), f"{where}.overlong")
    _check(
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
    _check(lora.r > 0, "lora.r", "must be a positive integer")
    _check(lora.alpha > 0, "lora.alpha", "must be positive")
    _check(0 <= lora.dropout < 1, "lora.dropout", "must be in [0, 1)")
    _check(bool(lora.target_modules), "lora.target_modules", f"name at least one of {list(LORA_TARGETS)}")
    for i, name in enumerate(lora.target_modules):
        _one_of(name, LORA_TARGETS, f"lora.target_modules[{i}]")
    _one_of(lora.bias, ("none", "all", "lora_only"), "lora.bias")
    if lora.quantize is not None:
        _one_of(lora.quantize, ("4bit", "8bit"), "lora.quantize")
        _check(
            config.model.size is None, "lora.quantize", "quantizes pretrained weights: set a pretrained model"
        )
    _check(
        config.model.init_device != "meta",
        "model.init_device",
        "LoRA adds adapters to built weights: use 'cpu'",
    )
    fsdp1 = config.fsdp_config is not None and os.environ.get("FSDP_VERSION") != "2"
    _check(
        not fsdp1 or config.model.pretrained_dtype == "float32",
        "model.pretrained_dtype",
        "LoRA under FSDP1 needs 'float32': FSDP1 flattens each block's frozen and trained tensors into one "
        "dtype, and trained ones stay fp32 (FSDP_VERSION=2 takes a bf16 base)",
    )
    if (
        config.fsdp_config is not None
    ):  # FSDP1 must keep the original parameters to mix frozen and trained ones
        _check(
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
    _check(duration != "sec", "max_duration", "must count batches, epochs, tokens or samples, not seconds")


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


def _check(ok: bool, path: str, problem: str) -> None:
    if not ok:
        raise TrainConfigError(f"{path}: {problem}")


def _one_of(value: str, choices: tuple[str, ...], path: str) -> None:
    _check(value in choices, path, f"'{value}' is not one of {list(choices)}{did_you_mean(value, choices)}")


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


def _describe(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"[:80]
