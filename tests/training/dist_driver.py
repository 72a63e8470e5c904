"""Run by tests under `composer -n N`: train with the test config and record what each step saw.

    composer -n 2 tests/training/dist_driver.py OUT.json [CONFIG.yaml] key=value ...

Writes OUT.json (rank 0): the full gradient norm of every step (after any gradient fix-up, before clipping
and the optimizer), whether this process group's AVG reduce-scatter sums (the gloo FSDP2 bug), and how
many modules are wrapped for activation checkpointing.
"""

from __future__ import annotations

import json
import sys

import torch
from composer.core import Callback, State
from composer.loggers import Logger
from composer.utils import dist

from replitlm.training.callbacks import gloo_avg_sums
from replitlm.training.config import load_train_config
from replitlm.training.run import train
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
        self.norms.append(total.sqrt().item())


def main() -> None:
    out, overrides = sys.argv[1], sys.argv[2:]
    config = TINY
    if overrides and overrides[0].endswith(".yaml"):
        config, overrides = overrides[0], overrides[1:]
    probe = GradNorms()
    train(load_train_config(config, overrides), [probe])
    avg_sums = gloo_avg_sums()
    if dist.get_global_rank() == 0:
        with open(out, "w") as f:
            result = {"grad_norms": probe.norms, "gloo_avg_sums": avg_sums, "world": dist.get_world_size()}
            json.dump({**result, "checkpointed_modules": probe.checkpointed}, f)


if __name__ == "__main__":
    main()
