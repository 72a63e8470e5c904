"""Composer callbacks and algorithms of our own: HF export, the non-finite loss stop, and the gloo FSDP2 fix."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import torch
from composer.core import Algorithm, Callback, Event, State, Time, TimeUnit
from composer.loggers import Logger
from composer.utils import dist
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

from replitlm.checkpoint import save_pretrained_atomic
from replitlm.lora import is_peft_model, save_adapter


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite; the run stops before a checkpoint of that state is written."""


class StopOnNonFiniteLoss(Callback):
    """Stop the run at the first batch whose loss is NaN/inf on any rank.

    It runs at BATCH_END, before Composer's checkpoint saver (BATCH_CHECKPOINT), so the last checkpoint on disk
    is the last good one. The flag is all-reduced so every rank stops together instead of hanging in a
    collective while one rank raises.
    """

    def batch_end(self, state: State, logger: Logger) -> None:
        losses = state.loss.values() if isinstance(state.loss, dict) else [state.loss]
        losses = [loss.detach().float().reshape(-1) for loss in losses if isinstance(loss, torch.Tensor)]
        if not losses:
            return
        bad = (~torch.isfinite(torch.cat(losses))).any().float().reshape(1)
        dist.all_reduce(bad, reduce_operation="MAX")
        if bad.item() > 0:
            batch = int(state.timestamp.batch)
            raise NonFiniteLossError(
                f"the training loss is NaN or infinite at batch {batch}: stopping. No checkpoint of this state was "
                "written; resume from the last one in save_folder (autoresume=true) with a lower optimizer.lr, "
                "a longer scheduler.t_warmup or algorithms.gradient_clipping."
            )


class LossHistory(Callback):
    """The training loss of every batch of this session (for the end-of-run summary)."""

    def __init__(self) -> None:
        self.losses: list[float] = []

    def batch_end(self, state: State, logger: Logger) -> None:
        loss = state.loss
        self.losses.append(float(sum(loss.values()) if isinstance(loss, dict) else loss))


class AverageGlooFSDP2Gradients(Algorithm):
    """Divide gradients by the world size where FSDP2's reduce-scatter sums instead of averaging.

    torch 2.7's FSDP2 asks the process group for ReduceOp.AVG; gloo (CPU) silently sums (pytorch#162338), so
    every gradient is world_size times too large. This runs after the last microbatch's backward and before
    gradient clipping and the optimizer step (Composer runs AFTER_* events in reverse list order, so it is
    listed after GradientClipping). It applies only where `gloo_avg_sums()` sees the bug at runtime.
    """

    def __init__(self, world_size: int) -> None:
        self.world_size = world_size

    def match(self, event: Event, state: State) -> bool:
        return event == Event.AFTER_TRAIN_BATCH

    def apply(self, event: Event, state: State, logger: Logger) -> None:
        for param in state.model.parameters():
            if param.grad is not None:
                param.grad.div_(self.world_size)


def gloo_avg_sums() -> bool:
    """Whether this run's default process group turns ReduceOp.AVG reduce-scatters into sums (gloo in torch 2.7)."""
    if not torch.distributed.is_initialized() or torch.distributed.get_backend() != "gloo":
        return False
    world = torch.distributed.get_world_size()
    out = torch.zeros(1)
    torch.distributed.reduce_scatter_tensor(out, torch.ones(world), op=torch.distributed.ReduceOp.AVG)
    return world > 1 and math.isclose(out.item(), world)


class HFExport(Callback):
    """Write a `save_pretrained` folder (safetensors + config.json + tokenizer) at the end and every `interval`.

    Works with plain, DDP and FSDP (1 and 2) models: every rank takes part in gathering the full state dict;
    rank 0 writes to a temporary folder and renames it into place, so a reader never sees half an export.
    Interval exports go to `<folder>-ba<batch>` beside it, the final one to `<folder>` itself. A LoRA run
    exports its adapter instead (adapter_config.json + adapter_model.safetensors, PEFT's format).
    """

    def __init__(self, folder: str, interval: str | None = None, dtype: torch.dtype = torch.float32) -> None:
        self.folder = folder
        self.interval = Time.from_timestring(interval) if interval else None
        self.dtype = dtype

    def batch_end(self, state: State, logger: Logger) -> None:
        if self.interval is None or self.interval.unit != TimeUnit.BATCH:
            return
        batch = int(state.timestamp.batch)
        if batch % self.interval.value == 0:
            folder = Path(self._resolve(state))
            self.export(state, folder.with_name(f"{folder.name}-ba{batch}"))

    def fit_end(self, state: State, logger: Logger) -> None:
        self.export(state, Path(self._resolve(state)))

    def _resolve(self, state: State) -> str:
        return self.folder.replace("{run_name}", state.run_name)

    def export(self, state: State, folder: Path) -> None:
        model = state.model.module if hasattr(state.model, "module") else state.model  # DDP wraps it
        inner = model.model
        adapter = is_peft_model(inner)  # LoRA: the adapter alone, in PEFT's format
        options = StateDictOptions(full_state_dict=True, cpu_offload=True, ignore_frozen_params=adapter)
        weights = get_model_state_dict(inner, options=options)
        if dist.get_global_rank() == 0:
            tokenizer = getattr(model, "tokenizer", None)
            if adapter:
                save_adapter(inner, folder, weights, self.dtype, tokenizer=tokenizer)
            else:
                save_pretrained_atomic(inner.config, weights, folder, self.dtype, tokenizer=tokenizer)
        dist.barrier()


def wandb_logger(**kwargs: Any) -> Any:
    """Composer's WandBLogger, except that autoresume asks W&B only for checkpoints it may have uploaded there.

    When no checkpoint is on disk, Composer asks every logger for one; W&B then needs an API key and the
    network even under WANDB_MODE=offline, so the first run of an offline job would fail. We answer "not
    there" unless checkpoints are logged as artifacts (`log_artifacts`) and W&B is online.
    """
    from composer.loggers import WandBLogger

    class CheckpointAwareWandBLogger(WandBLogger):
        def download_file(
            self, remote_file_name: str, destination: str, overwrite: bool = False, progress_bar: bool = True
        ) -> None:
            if not self._log_artifacts or os.environ.get("WANDB_MODE") in ("offline", "dryrun", "disabled"):
                raise FileNotFoundError(f"{remote_file_name}: checkpoints are not stored in W&B for this run")
            super().download_file(remote_file_name, destination, overwrite, progress_bar)

    return CheckpointAwareWandBLogger(**kwargs)
