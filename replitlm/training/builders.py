"""TrainConfig → the objects a Composer Trainer takes. Each builder does one thing and is usable alone."""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch
from composer import Trainer
from composer.algorithms import GradientClipping
from composer.callbacks import LRMonitor, MemoryMonitor, SpeedMonitor
from composer.core import Algorithm, Callback, Evaluator
from composer.loggers import LoggerDestination
from composer.optim import (
    ConstantWithWarmupScheduler,
    CosineAnnealingWithWarmupScheduler,
    DecoupledAdamW,
    LinearWithWarmupScheduler,
)
from composer.utils import dist

from replitlm.checkpoint import CheckpointError, load_config
from replitlm.config import ReplitLMConfig, config_for_size
from replitlm.dtypes import torch_dtype
from replitlm.hub import HubUnreachableError, hub_errors
from replitlm.lora import add_lora, lora_config, quantization_config
from replitlm.model import ReplitLMForCausalLM, init_weights_
from replitlm.tokenizer import load_tokenizer
from replitlm.training.callbacks import (
    AverageGlooFSDP2Gradients,
    HFExport,
    RestoreRNGMidEpoch,
    StopOnNonFiniteLoss,
    gloo_avg_sums,
    wandb_logger,
)
from replitlm.training.composer_model import ComposerReplitLM
from replitlm.training.data import TokenCollator, build_dataloader, data_spec
from replitlm.training.finetuning import build_finetuning_dataloader
from replitlm.training.lion import DecoupledLionW
from replitlm.training.multinode import per_node_signal_files
from replitlm.training.resume import LATEST, is_complete, repair_latest
from replitlm.training.schema import LoaderSection, TrainConfig, TrainConfigError
from replitlm.training.validation import validate_for_machine


# -- model ---------------------------------------------------------------------------------------------------
def model_overrides(cfg: TrainConfig) -> dict[str, Any]:
    """The model section's config fields; the model's max_seq_len follows the top-level one unless given.

    Packed finetuning examples must not see each other: packing turns on per-document attention.
    """
    overrides = {"max_seq_len": cfg.max_seq_len, **cfg.model.overrides()}
    loaders = [cfg.train_loader, cfg.eval_loader]
    if any(lo is not None and lo.name == "finetuning" and lo.dataset.packing for lo in loaders):
        overrides["attn_config"] = {**overrides.get("attn_config", {}), "attn_uses_sequence_id": True}
    return overrides


MODEL_KEY = "model.pretrained_model_name_or_path"


def build_model_config(cfg: TrainConfig) -> ReplitLMConfig:
    """The preset or checkpoint config with the section's overrides."""
    overrides = model_overrides(cfg)
    if cfg.model.size is not None:
        return config_for_size(cfg.model.size, **overrides)
    with hub_errors(cfg.model.pretrained_model_name_or_path, MODEL_KEY):
        config, _ = load_config(cfg.model.pretrained_model_name_or_path, overrides=overrides)
    return config


def build_model(cfg: TrainConfig, config: ReplitLMConfig) -> torch.nn.Module:
    """The model to train: the preset or checkpoint, with LoRA adapters (a peft model) when `lora` is set."""
    model = _build_base_model(cfg, config)
    if cfg.lora is None:
        return model
    lora = cfg.lora
    peft_config = lora_config(
        lora.r, lora.alpha, lora.dropout, lora.target_modules, lora.modules_to_save, lora.bias
    )
    try:
        model = add_lora(model, peft_config, quantized=lora.quantize is not None)
    except ValueError as exc:
        raise TrainConfigError(str(exc)) from exc
    # peft upcasts only the LoRA matrices: a bf16 `modules_to_save` copy would lose most small updates to
    # rounding. Everything that trains keeps fp32 master weights (amp computes in bf16 all the same).
    for param in model.parameters():
        if param.requires_grad and param.is_floating_point() and param.dtype != torch.float32:
            param.data = param.data.float()
    return model


def loads_on_rank0_only(cfg: TrainConfig) -> bool:
    """Whether only global rank 0 reads the pretrained weights, and FSDP1 broadcasts them to the other ranks
    while wrapping (`sync_module_states`), as llm-foundry does: one host copy per node instead of one per GPU
    (fp32 3B: 10.4 GB each). FSDP2 and DDP load on every rank; a quantized base is loaded per GPU."""
    quantized = cfg.lora is not None and cfg.lora.quantize is not None
    return (
        cfg.model.pretrained_model_name_or_path is not None
        and cfg.fsdp_config is not None
        and os.environ.get("FSDP_VERSION") != "2"
        and not quantized
        and dist.get_world_size() > 1
    )


def _build_base_model(cfg: TrainConfig, config: ReplitLMConfig) -> ReplitLMForCausalLM:
    wanted = cfg.model
    if loads_on_rank0_only(cfg) and dist.get_global_rank() != 0:
        # The same architecture without memory; FSDP materialises it shard by shard, then rank 0's weights
        # overwrite it. Initialised all the same, so nothing uninitialised is ever read.
        with torch.device("meta"):
            model = ReplitLMForCausalLM(config).to(torch_dtype(wanted.pretrained_dtype))
        model.param_init_fn = lambda module: _init_one(module, config)
        return model
    if wanted.pretrained_model_name_or_path is not None:
        quantize = cfg.lora.quantize if cfg.lora is not None else None
        extra: dict[str, Any] = {}
        if quantize is not None:  # QLoRA: the frozen base in 4 (or 8) bits on this rank's GPU
            extra = {
                "quantization_config": quantization_config(quantize),
                "device_map": {"": dist.get_local_rank()},
            }
        with hub_errors(wanted.pretrained_model_name_or_path, MODEL_KEY):
            return ReplitLMForCausalLM.from_pretrained(
                wanted.pretrained_model_name_or_path,
                config_overrides=model_overrides(cfg),
                dtype=torch_dtype(wanted.pretrained_dtype),
                **extra,
            )
    if wanted.init_device == "meta":  # on a GPU: validate_for_machine
        with torch.device("meta"):
            model = ReplitLMForCausalLM(config)
        # FSDP materialises one module at a time and calls this on it (the module's own tensors only).
        model.param_init_fn = lambda module: _init_one(module, config)
        return model
    with torch.device(wanted.init_device):
        model = ReplitLMForCausalLM(config)  # initialised by its constructor (PreTrainedModel.post_init)
    return model


@torch.no_grad()
def _init_one(module: torch.nn.Module, config: ReplitLMConfig) -> None:
    init_weights_(module, config)


# -- data ----------------------------------------------------------------------------------------------------
def device_batch_size(cfg: TrainConfig) -> int:
    world = dist.get_world_size()
    if cfg.global_train_batch_size % world:
        raise TrainConfigError(
            f"global_train_batch_size: {cfg.global_train_batch_size} does not divide among {world} processes"
        )
    per_device = cfg.global_train_batch_size // world
    if cfg.device_train_microbatch_size > per_device:
        raise TrainConfigError(
            f"device_train_microbatch_size: {cfg.device_train_microbatch_size} is larger than the batch per "
            f"device ({cfg.global_train_batch_size} / {world} processes = {per_device})"
        )
    return per_device


def build_collator(
    cfg: TrainConfig, loader: LoaderSection, config: ReplitLMConfig, pad_id: int
) -> TokenCollator:
    use_sequence_id = loader.dataset.use_sequence_id
    if loader.name == "finetuning":  # packed examples carry sequence_id; one example per row needs none
        use_sequence_id = loader.dataset.packing
    elif use_sequence_id is None:
        use_sequence_id = bool(config.attn_config["attn_uses_sequence_id"])
    return TokenCollator(cfg.max_seq_len, config.vocab_size, pad_id, use_sequence_id)


def build_loader(
    cfg: TrainConfig,
    loader: LoaderSection,
    config: ReplitLMConfig,
    tokenizer: Any,
    batch_size: int,
    train: bool,
) -> Any:
    """A text (packed token shards) or finetuning (prompt/response examples) dataloader, as a DataSpec that
    counts real and loss-generating tokens (see `tokens_in_batch`)."""
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    collator = build_collator(cfg, loader, config, pad_id)
    if loader.name == "finetuning":
        built = build_finetuning_dataloader(loader, tokenizer, cfg.max_seq_len, batch_size, collator, train)
    else:
        built = build_dataloader(loader, batch_size, collator, train=train)
    return data_spec(built)


def clean_stale_streaming_memory() -> None:
    """Remove shared memory that a killed earlier run left behind (streaming would refuse to start).

    Every rank calls it: streaming cleans on local rank 0 and then holds all ranks at a barrier, so no rank
    builds a dataset before the cleaning is done (and the ranks' later barriers stay paired).
    """
    from streaming.base.util import clean_stale_shared_memory

    clean_stale_shared_memory()


# -- optimisation --------------------------------------------------------------------------------------------
def build_optimizer(cfg: TrainConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    opt = cfg.optimizer
    params = [p for p in model.parameters() if p.requires_grad]
    if opt.name == "decoupled_lionw":
        return DecoupledLionW(params, lr=opt.lr, betas=tuple(opt.betas), weight_decay=opt.weight_decay)
    return DecoupledAdamW(
        params, lr=opt.lr, betas=tuple(opt.betas), eps=opt.eps, weight_decay=opt.weight_decay
    )


def build_scheduler(cfg: TrainConfig) -> Any:
    sched = cfg.scheduler
    if sched.name == "cosine_with_warmup":
        return CosineAnnealingWithWarmupScheduler(
            t_warmup=sched.t_warmup, t_max=sched.t_max, alpha_f=sched.alpha_f
        )
    if sched.name == "linear_decay_with_warmup":
        return LinearWithWarmupScheduler(t_warmup=sched.t_warmup, t_max=sched.t_max, alpha_f=sched.alpha_f)
    return ConstantWithWarmupScheduler(t_warmup=sched.t_warmup, t_max=sched.t_max)


def build_algorithms(cfg: TrainConfig) -> list[Algorithm]:
    algorithms: list[Algorithm] = []
    clip = cfg.algorithms.gradient_clipping
    if clip is not None:
        algorithms.append(
            GradientClipping(clipping_type=clip.clipping_type, clipping_threshold=clip.clipping_threshold)
        )
    if cfg.fsdp_config is not None and os.environ.get("FSDP_VERSION") == "2" and gloo_avg_sums():
        # after GradientClipping in the list = before it at AFTER_TRAIN_BATCH (Composer reverses AFTER_* events)
        algorithms.append(AverageGlooFSDP2Gradients(dist.get_world_size()))
    return algorithms


# -- logging and callbacks -----------------------------------------------------------------------------------
def build_loggers(cfg: TrainConfig) -> list[LoggerDestination]:
    loggers: list[LoggerDestination] = []
    if cfg.loggers.wandb is not None:
        wandb = cfg.loggers.wandb
        loggers.append(
            wandb_logger(
                project=wandb.project,
                entity=wandb.entity,
                group=wandb.group,
                name=wandb.name,
                tags=wandb.tags,
                log_artifacts=wandb.log_artifacts,
                init_kwargs=wandb.init_kwargs,
            )
        )
    if cfg.loggers.tensorboard is not None:
        from composer.loggers import TensorboardLogger

        try:
            import tensorboard  # noqa: F401  (optional: not in the pinned set)
        except ImportError as exc:
            raise TrainConfigError("loggers.tensorboard: needs `pip install tensorboard`") from exc

        board = cfg.loggers.tensorboard
        loggers.append(TensorboardLogger(log_dir=board.log_dir, flush_interval=board.flush_interval))
    return loggers


def build_callbacks(cfg: TrainConfig) -> list[Callback]:
    wanted = cfg.callbacks
    callbacks: list[Callback] = [StopOnNonFiniteLoss()]
    if wanted.speed_monitor is not None:
        callbacks.append(
            SpeedMonitor(
                window_size=wanted.speed_monitor.window_size,
                gpu_flops_available=wanted.speed_monitor.gpu_flops_available,
            )
        )
    if wanted.lr_monitor is not None:
        callbacks.append(LRMonitor())
    if wanted.memory_monitor is not None and torch.cuda.is_available():
        callbacks.append(MemoryMonitor())
    if wanted.hf_export is not None:
        callbacks.append(
            HFExport(
                wanted.hf_export.save_folder, wanted.hf_export.interval, torch_dtype(wanted.hf_export.dtype)
            )
        )
    return callbacks


def prepare_autoresume(cfg: TrainConfig) -> None:
    """Rank 0 makes `latest` point at the newest complete checkpoint (see replitlm/training/resume.py)."""
    if not cfg.autoresume or cfg.save_folder is None or "://" in cfg.save_folder:
        return
    if dist.get_global_rank() == 0:
        note = repair_latest(cfg.save_folder.replace("{run_name}", cfg.run_name or ""))
        if note:
            print(f"autoresume: {note}", flush=True)
    dist.barrier()


_LOAD_ERRORS = (RuntimeError, pickle.UnpicklingError, EOFError, zipfile.BadZipFile, ValueError)
# Where a checkpoint is read: an error raised below these is about the checkpoint, any other keeps its own message.
_LOADERS = ("/composer/utils/checkpoint.py", "/torch/serialization.py", "/torch/distributed/checkpoint/")


def checkpoint_to_load(cfg: TrainConfig) -> str | None:
    """The checkpoint the trainer will load (load_path, or autoresume's latest), checked if it is local."""
    path = cfg.load_path
    if path is None and cfg.autoresume and cfg.save_folder and "://" not in cfg.save_folder:
        latest = Path(cfg.save_folder.replace("{run_name}", cfg.run_name or "")) / LATEST
        return str(latest) if latest.exists() else None
    if path is None or "://" in path:
        return path
    if not Path(path).exists():
        raise CheckpointError(f"load_path: {path} does not exist")
    if not is_complete(Path(path)):
        raise CheckpointError(
            f"load_path: {path} is truncated or not a Composer checkpoint (a torch.save file, or a sharded "
            "folder with its .metadata); Composer checkpoints are pickles: load only ones you trust"
        )
    return path


def _is_load_error(exc: BaseException) -> bool:
    """Whether `exc` was raised while reading or applying a checkpoint (judged by where it was raised)."""
    tb = exc.__traceback__
    while tb is not None:
        if any(part in tb.tb_frame.f_code.co_filename for part in _LOADERS):
            return True
        tb = tb.tb_next
    return False


# -- the trainer ---------------------------------------------------------------------------------------------
def build_trainer(cfg: TrainConfig, extra_callbacks: list[Callback] | tuple[Callback, ...] = ()) -> Trainer:
    """Everything the config describes, assembled into a Composer Trainer (distributed if launched so)."""
    from composer.utils import get_device, reproducibility

    on_gpu = cfg.device == "gpu" or (cfg.device is None and torch.cuda.is_available())
    validate_for_machine(cfg, on_gpu=on_gpu)
    # Distributed first: the batch split, the gloo check and FSDP all need the process group.
    dist.initialize_dist(get_device(cfg.device), timeout=cfg.dist_timeout)
    validate_for_machine(cfg, on_gpu=on_gpu, world_size=dist.get_world_size())
    clean_stale_streaming_memory()
    prepare_autoresume(cfg)
    reproducibility.seed_all(cfg.seed)
    per_device = device_batch_size(cfg)
    config = build_model_config(cfg)
    try:
        with hub_errors(cfg.tokenizer.name, "tokenizer.name", "tokenizer"):
            tokenizer = load_tokenizer(cfg.tokenizer.name)
    except HubUnreachableError as exc:
        raise TrainConfigError(str(exc)) from None
    except (OSError, ValueError) as exc:  # a missing folder, a file that is not a SentencePiece model
        raise TrainConfigError(f"tokenizer.name: {exc}") from exc
    model = ComposerReplitLM(build_model(cfg, config), tokenizer)
    train_loader = build_loader(cfg, cfg.train_loader, config, tokenizer, per_device, train=True)
    evaluators = []
    if cfg.eval_loader is not None:
        eval_batch = cfg.device_eval_batch_size or cfg.device_train_microbatch_size
        eval_loader = build_loader(cfg, cfg.eval_loader, config, tokenizer, eval_batch, train=False)
        evaluators.append(
            Evaluator(label="eval", dataloader=eval_loader, metric_names=list(model.val_metrics))
        )
    parallelism = {"fsdp": dict(cfg.fsdp_config)} if cfg.fsdp_config is not None else None
    if loads_on_rank0_only(cfg):
        parallelism["fsdp"]["sync_module_states"] = True
    per_node_signal_files()  # before autoresume: nodes sharing save_folder must not delete each other's file
    checkpoint = checkpoint_to_load(cfg)
    restore_rng = RestoreRNGMidEpoch()
    try:
        trainer = Trainer(
            model=model,
            train_dataloader=train_loader,
            eval_dataloader=evaluators or None,
            eval_interval=cfg.eval_interval if evaluators else 1,  # Composer warns about an unused interval
            eval_subset_num_batches=cfg.eval_subset_num_batches,
            max_duration=cfg.max_duration,
            optimizers=build_optimizer(cfg, model),
            schedulers=build_scheduler(cfg),
            algorithms=build_algorithms(cfg),
            precision=cfg.precision,
            device_train_microbatch_size=cfg.device_train_microbatch_size,
            # Each microbatch's loss is a mean over its labelled tokens: weigh it by them, so one update does
            # not depend on how the batch is split into microbatches and ranks (llm-foundry does the same).
            accumulate_train_batch_on_tokens=True,
            parallelism_config=parallelism,
            loggers=build_loggers(cfg),
            callbacks=[restore_rng, *build_callbacks(cfg), *extra_callbacks],
            run_name=cfg.run_name,
            save_folder=cfg.save_folder,
            save_interval=cfg.save_interval,
            save_num_checkpoints_to_keep=cfg.save_num_checkpoints_to_keep,
            save_overwrite=cfg.save_overwrite,
            save_weights_only=cfg.save_weights_only,
            autoresume=cfg.autoresume,
            load_path=cfg.load_path,
            load_weights_only=cfg.load_weights_only,
            progress_bar=cfg.progress_bar,
            log_to_console=cfg.log_to_console,
            console_log_interval=cfg.console_log_interval,
            python_log_level=cfg.python_log_level,
            dist_timeout=cfg.dist_timeout,
            device=cfg.device,
            seed=cfg.seed,
        )
    except _LOAD_ERRORS as exc:  # Composer's own messages name neither the file nor the fix
        if checkpoint is None or not _is_load_error(exc):
            raise
        detail = " ".join(str(exc).split("\n")[:2]).strip()[:400]
        raise CheckpointError(f"{checkpoint}: cannot be loaded into this run ({detail})") from exc
    restore_rng.take_over(trainer)
    return trainer
