"""GPU-only training paths (skipped without CUDA): meta-device init under FSDP, bf16 steps."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from replitlm import ReplitLMForCausalLM
from tests.training.test_train import Recorder, run


@pytest.mark.gpu
@pytest.mark.parametrize("attn_impl", ["torch", "flex"])
def test_meta_init_under_fsdp_trains_in_bf16(token_data: Path, tmp_path: Path, attn_impl: str) -> None:
    rec = Recorder()
    fsdp = "{sharding_strategy: FULL_SHARD, mixed_precision: PURE, activation_checkpointing: true}"
    overrides = {
        "model.init_device": "meta",
        "model.attn_config.attn_impl": attn_impl,
        "fsdp_config": fsdp,
        "precision": "amp_bf16",
        "optimizer.lr": 1e-2,
    }
    run(token_data, tmp_path, [rec], max_duration="12ba", **overrides)
    assert all(math.isfinite(x) for x in rec.losses) and rec.losses[-1] < rec.losses[0]
    model = ReplitLMForCausalLM.from_pretrained(tmp_path / "hf")
    assert not any(p.isnan().any() for p in model.parameters())
