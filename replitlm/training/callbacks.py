"""Composer callbacks and algorithms of our own: HF export, the non-finite loss stop, the RNG on resume, and the
gloo FSDP2 fix."""

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
from torch.distributed.fsdp import FullyShardedDataParallel

from replitlm.export import save_pretrained_atomic
from replitlm.lora import is_peft_model, save_adapter
from replitlm.training.composer_model import plain_name
from replitlm.training.data import tokens_in_batch


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite; the run stops before a checkpoint of that state is written."""


class StopOnNonFiniteLoss(Callback):
    """Stop the run at the first batch with a NaN/inf loss in any microbatch on any rank, before its update.

    Composer overwrites `state.loss` with each microbatch's loss, so every microbatch is looked at as it is
    computed (AFTER_LOSS); the verdict comes after the batch's last backward (AFTER_TRAIN_BATCH), before
    gradient clipping, `optimizer.step` and the checkpoint saver, so no update and no checkpoint of that
    batch exist and the last good checkpoint stays `latest`. The flag is all-reduced so every rank stops
    together instead of hanging in a collective while one rank raises.
    """

    def __init__(self) -> None:
        self.bad: torch.Tensor | None = None  # on the loss's device: no host sync per microbatch

    def after_loss(self, state: State, logger: Logger) -> None:
        for loss in _losses(state.loss):
            flag = (~torch.isfinite(loss)).any().float().reshape(1)
            self.bad = flag if self.bad is None else torch.maximum(self.bad, flag)

    def after_train_batch(self, state: State, logger: Logger) -> None:
        bad, self.bad = self.bad, None
        if bad is None:  # no loss seen on this rank; the others still wait for its vote
            bad = torch.zeros(1, device=next(state.model.parameters()).device)
        dist.all_reduce(bad, reduce_operation="MAX")
        if bad.item() > 0:
            batch = (
                int(state.timestamp.batch) + 1
            )  # the batch being trained: the timestamp counts finished ones
            raise NonFiniteLossError(
                f"the training loss is NaN or infinite at batch {batch}: stopping before its update. No "
                "checkpoint of it was written; resume from the last one in save_folder (autoresume=true) with "
                "a lower optimizer.lr, a longer scheduler.t_warmup or algorithms.gradient_clipping."
            )


class LossHistory(Callback):
    """The training loss of every batch of this session (for the end-of-run summary): the mean over all its
    microbatches on this rank, each weighed by its loss-generating tokens as the update weighs it."""

    def __init__(self) -> None:
        self.losses: list[float] = []
        self._sum: torch.Tensor | float = 0.0  # a tensor on the loss's device until the batch ends
        self._tokens = 0

    def after_loss(self, state: State, logger: Logger) -> None:
        tokens = tokens_in_batch(state.batch)["loss_generating"]
        self._sum = self._sum + sum(loss.float().mean() for loss in _losses(state.loss)) * tokens
        self._tokens += tokens

    def batch_end(self, state: State, logger: Logger) -> None:
        self.losses.append(float(self._sum) / max(1, self._tokens))
        self._sum, self._tokens = 0.0, 0


def _losses(loss: Any) -> list[torch.Tensor]:
    values = loss.values() if isinstance(loss, dict) else loss if isinstance(loss, (list, tuple)) else [loss]
    return [v.detach() for v in values if isinstance(v, torch.Tensor)]


class RestoreRNGMidEpoch(Callback):
    """Restore the checkpoint's RNG state (dropout's, among others) when a run resumes mid-epoch.

    Composer 0.32.1 restores it mid-epoch only while spinning a dataloader forward; a StreamingDataset resumes
    its position by itself, so the resumed run went on with a fresh RNG and ended different from an
    uninterrupted one. The state is applied just after the first resumed batch is fetched (creating the
    dataloader's iterator draws from the RNG, which the uninterrupted run did not do at that point).
    """

    def __init__(self) -> None:
        self.rng: list[dict] | None = None

    def take_over(self, trainer: Any) -> None:
        """Take the state Composer would not apply (call after the Trainer is built)."""
        if trainer._rng_state is not None and int(trainer.state.timestamp.batch_in_epoch) > 0:
            self.rng, trainer._rng_state = trainer._rng_state, None

    def after_dataloader(self, state: State, logger: Logger) -> None:
        if self.rng is not None:
            from composer.utils import reproducibility

            reproducibility.load_rng_state(self.rng)
            self.rng = None


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
        inner = model.model  # FSDP1 wraps this one (FSDP2 shards it in place)
        unwrapped = inner.module if isinstance(inner, FullyShardedDataParallel) else inner
        adapter = is_peft_model(unwrapped)  # LoRA: the adapter alone, in PEFT's format
        # Gathered to rank 0's CPU (FSDP1 gives the other ranks an empty dict, so frozen parameters are
        # filtered here rather than by `ignore_frozen_params`, which fails there).
        weights = get_model_state_dict(
            inner, options=StateDictOptions(full_state_dict=True, cpu_offload=True)
        )
        if adapter:
            trained = {plain_name(n) for n, p in unwrapped.named_parameters() if p.requires_grad}
            weights = {k: v for k, v in weights.items() if k in trained}
        if dist.get_global_rank() == 0:
            tokenizer = getattr(model, "tokenizer", None)
            if adapter:
                save_adapter(unwrapped, folder, weights, self.dtype, tokenizer=tokenizer)
            else:
                save_pretrained_atomic(unwrapped.config, weights, folder, self.dtype, tokenizer=tokenizer)
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
