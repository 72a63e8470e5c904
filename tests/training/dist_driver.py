"""Run by tests under `composer -n N`: train with the test config and record what each step saw.

    composer -n 2 tests/training/dist_driver.py OUT.json [CONFIG.yaml] key=value ...

Writes OUT.json (rank 0): the full gradient norm of every step (after any gradient fix-up, before clipping
and the optimizer), whether this process group's AVG reduce-scatter sums (the gloo FSDP2 bug), and how
many modules are wrapped for activation checkpointing; and OUT.json.rankN (every rank): which pretrained
models that rank loaded from disk. With REPLITLM_TEST_FSDP1_ON_CPU=1, Composer's FSDP1
path runs on the CPU (tests/training/fsdp1_cpu.py).
"""

from __future__ import annotations

import json
import os
import sys

import torch
from composer.core import Callback, State
from composer.loggers import Logger
from composer.utils import dist

from replitlm.training.callbacks import gloo_avg_sums
from replitlm.training.config import load_train_config
from replitlm.training.run import train
from tests.training import fsdp1_cpu
from tests.training.conftest import TINY


class GradNorms(Callback):
    def __init__(self) -> None:
        self.norms: list[float] = []
        self.checkpointed = 0

    def fit_start(self, state: State, logger: Logger) -> None:
        self.checkpointed = sum("Checkpoint" in type(m).__name__ for m in state.model.modules())

    def after_train_batch(self, state: State, logger: Logger) -> None:
        total = torch.zeros((), dtype=torch.float64)
        for p in state.model.parameters():
            if p.grad is not None:
                g = p.grad.full_tensor() if hasattr(p.grad, "full_tensor") else p.grad
                total += g.double().pow(2).sum()
        if _fsdp1_sharded(state.model):  # each rank holds a disjoint shard of every gradient
            torch.distributed.all_reduce(total)
        self.norms.append(total.sqrt().item())


def _fsdp1_sharded(model: torch.nn.Module) -> bool:
    from torch.distributed.fsdp import FullyShardedDataParallel, ShardingStrategy

    return any(
        isinstance(m, FullyShardedDataParallel) and m.sharding_strategy != ShardingStrategy.NO_SHARD
        for m in model.modules()
    )


def count_pretrained_loads() -> list[str]:
    """Records each ReplitLMForCausalLM.from_pretrained call of this process (which ranks read weights)."""
    from replitlm import ReplitLMForCausalLM

    calls: list[str] = []
    original = ReplitLMForCausalLM.from_pretrained.__func__

    def counted(cls: type, path: object, *args: object, **kwargs: object) -> object:
        calls.append(str(path))
        return original(cls, path, *args, **kwargs)

    ReplitLMForCausalLM.from_pretrained = classmethod(counted)
    return calls


def main() -> None:
    if os.environ.get(fsdp1_cpu.ENV):
        fsdp1_cpu.enable()
    loads = count_pretrained_loads()
    out, overrides = sys.argv[1], sys.argv[2:]
    config = TINY
    if overrides and overrides[0].endswith(".yaml"):
        config, overrides = overrides[0], overrides[1:]
    probe = GradNorms()
    train(load_train_config(config, overrides), [probe])
    avg_sums = gloo_avg_sums()
    with open(f"{out}.rank{dist.get_global_rank()}", "w") as f:
        json.dump({"pretrained_loads": loads}, f)
    if dist.get_global_rank() == 0:
        with open(out, "w") as f:
            result = {"grad_norms": probe.norms, "gloo_avg_sums": avg_sums, "world": dist.get_world_size()}
            json.dump({**result, "checkpointed_modules": probe.checkpointed}, f)


if __name__ == "__main__":
    main()
