"""DecoupledLionW against the Lion update rule written out step by step, with Composer's decoupled decay."""

from __future__ import annotations

import pytest
import torch
from composer.optim import CosineAnnealingScheduler

from replitlm.training.lion import DecoupledLionW


def reference_lion(p, grads, lrs, lr0, beta1, beta2, wd):
    """One parameter through several steps, element by element, exactly as the paper's Algorithm 2 + decay."""
    p, m = p.clone().double(), torch.zeros_like(p, dtype=torch.double)
    for g, lr in zip(grads, lrs, strict=True):
        g = g.double()
        p = p * (1 - (lr / lr0) * wd)
        c = beta1 * m + (1 - beta1) * g
        p = p - lr * torch.sign(c)
        m = beta2 * m + (1 - beta2) * g
    return p


@pytest.mark.parametrize("wd", [0.0, 0.1])
def test_matches_the_update_rule_with_a_schedule(wd: float) -> None:
    torch.manual_seed(0)
    start = torch.randn(5, 7)
    grads = [torch.randn(5, 7) for _ in range(6)]
    grads[2][0, 0] = 0.0  # sign(0) = 0: no move from the update term
    lrs = [1e-2, 8e-3, 6e-3, 4e-3, 2e-3, 1e-3]  # a decaying schedule; decay follows lr / lr0
    param = torch.nn.Parameter(start.clone())
    opt = DecoupledLionW([param], lr=lrs[0], betas=(0.9, 0.99), weight_decay=wd)
    for g, lr in zip(grads, lrs, strict=True):
        for group in opt.param_groups:
            group["lr"] = lr
        param.grad = g.clone()
        opt.step()
    expected = reference_lion(start, grads, lrs, lrs[0], 0.9, 0.99, wd)
    torch.testing.assert_close(param.detach().double(), expected, rtol=0, atol=1e-6)


def test_state_is_one_momentum_and_survives_a_state_dict_round_trip() -> None:
    torch.manual_seed(1)
    a, b = torch.nn.Parameter(torch.randn(4)), torch.nn.Parameter(torch.randn(4))
    opt = DecoupledLionW([a, b], lr=1e-2, weight_decay=0.05)
    for _ in range(3):
        a.grad, b.grad = torch.randn(4), torch.randn(4)
        opt.step()
    assert set(opt.state[b]) == {"exp_avg"}
    b2 = torch.nn.Parameter(b.detach().clone())
    clone = DecoupledLionW([torch.nn.Parameter(a.detach().clone()), b2], lr=1e-2, weight_decay=0.05)
    clone.load_state_dict(opt.state_dict())
    g = torch.randn(4)
    b.grad, b2.grad = g.clone(), g.clone()
    opt.step()
    clone.step()
    torch.testing.assert_close(b, b2, rtol=0, atol=0)


def test_parameters_without_gradients_are_untouched_even_with_decay() -> None:
    frozen = torch.nn.Parameter(torch.ones(3))
    DecoupledLionW([frozen], lr=1e-2, weight_decay=0.5).step()
    assert torch.equal(frozen, torch.ones(3))


def test_follows_a_composer_schedule_step_by_step() -> None:
    """A Composer scheduler scales group['lr'] each batch; the update follows that lr and the decoupled decay
    follows lr / initial_lr, as the step-by-step reference computes them from the cosine formula."""
    import math

    from composer.core import State
    from composer.devices import DeviceCPU
    from composer.optim.scheduler import compile_composer_scheduler

    torch.manual_seed(2)
    start = torch.randn(6)
    grads = [torch.randn(6) for _ in range(5)]
    param = torch.nn.Parameter(start.clone())
    opt = DecoupledLionW([param], lr=0.1, betas=(0.9, 0.99), weight_decay=0.5)
    state = State(
        model=torch.nn.Linear(1, 1), rank_zero_seed=0, run_name="x", device=DeviceCPU(), max_duration="5ba"
    )
    state.optimizers = opt
    schedule = compile_composer_scheduler(CosineAnnealingScheduler(), state)
    for g in grads:
        param.grad = g.clone()
        opt.step()
        state.timestamp = state.timestamp.to_next_batch(samples=1, tokens=1)
        schedule.step()
    lrs = [0.1 * 0.5 * (1 + math.cos(math.pi * t / 5)) for t in range(5)]
    expected = reference_lion(start, grads, lrs, 0.1, 0.9, 0.99, 0.5)
    torch.testing.assert_close(param.detach().double(), expected, rtol=0, atol=1e-6)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)  # the end of the cosine


@pytest.mark.parametrize("bad", [{"lr": 0.0}, {"betas": (0.9, 1.0)}, {"weight_decay": -1.0}])
def test_bad_hyperparameters_are_refused(bad: dict) -> None:
    with pytest.raises(ValueError):
        DecoupledLionW([torch.nn.Parameter(torch.ones(1))], **{"lr": 1e-3, **bad})
