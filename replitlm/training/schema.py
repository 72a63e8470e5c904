"""The training config's schema: typed sections with their defaults and what each key means.

A YAML file plus `key=value` overrides becomes these dataclasses (replitlm/training/config.py loads them;
replitlm/training/validation.py checks what one key alone cannot say). The shape follows llm-foundry's YAMLs
(top-level `max_seq_len`, `global_train_batch_size`, ..., and sections `model`, `tokenizer`, `train_loader`,
...) so its users feel at home.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from replitlm.lora import LORA_TARGETS


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
