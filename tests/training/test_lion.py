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


def test_works_with_composer_schedulers() -> None:
    """Composer's schedulers scale group['lr']; the decay then follows that ratio (initial_lr stays)."""
    from composer.core import State, Time
    from composer.devices import DeviceCPU

    param = torch.nn.Parameter(torch.ones(2))
    opt = DecoupledLionW([param], lr=0.1, weight_decay=0.5)
    state = State(
        model=torch.nn.Linear(1, 1), rank_zero_seed=0, run_name="x", device=DeviceCPU(), max_duration="10ba"
    )
    state.optimizers = opt
    scale = CosineAnnealingScheduler()(state)
    assert opt.param_groups[0]["initial_lr"] == 0.1
    assert isinstance(scale, float) and state.max_duration == Time.from_timestring("10ba")


@pytest.mark.parametrize("bad", [{"lr": 0.0}, {"betas": (0.9, 1.0)}, {"weight_decay": -1.0}])
def test_bad_hyperparameters_are_refused(bad: dict) -> None:
    with pytest.raises(ValueError):
        DecoupledLionW([torch.nn.Parameter(torch.ones(1))], **{"lr": 1e-3, **bad})
