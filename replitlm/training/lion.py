"""Lion (Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms") with Composer's decoupled weight decay.

replit-code-v1-3b was trained with it. Per parameter p, gradient g, momentum m, learning rate lr (from the
schedule) and the peak lr0 the optimizer was built with:

    p ← p · (1 − (lr / lr0) · weight_decay)        decay follows the schedule but is not multiplied by lr
    p ← p − lr · sign(β1 · m + (1 − β1) · g)       the update has the same size in every coordinate
    m ← β2 · m + (1 − β2) · g

Because every coordinate moves by ±lr, Lion wants a 3-10x smaller lr than AdamW (and a larger decay).
It keeps one state tensor per parameter (AdamW keeps two), which is what made it attractive at 2.6B on 40 GB.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import Tensor


class DecoupledLionW(torch.optim.Optimizer):
    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict],
        lr: float = 1e-4,
        betas: tuple[float, float] = (0.9, 0.99),
        weight_decay: float = 0.0,
    ) -> None:
        if lr <= 0:
            raise ValueError(f"lr must be positive, got {lr}")
        if not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"betas must be in [0, 1), got {betas}")
        if weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "weight_decay": weight_decay})
        for group in self.param_groups:
            group["initial_lr"] = group["lr"]  # the schedule scales lr; decay scales with lr / initial_lr

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, (beta1, beta2), decay = group["lr"], group["betas"], group["weight_decay"]
            decay_factor = lr / group["initial_lr"] if group["initial_lr"] else 1.0
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["exp_avg"] = torch.zeros_like(p)
                m, g = state["exp_avg"], p.grad
                if decay:
                    p.mul_(1 - decay_factor * decay)
                p.add_(torch.lerp(g, m, beta1).sign_(), alpha=-lr)  # lerp(g, m, β1) = β1·m + (1−β1)·g
                m.lerp_(g, 1 - beta2)  # m ← β2·m + (1−β2)·g
        return loss
