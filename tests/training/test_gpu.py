"""GPU-only training paths (skipped without CUDA): meta-device init under FSDP, bf16 steps."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from replitlm import ReplitLMForCausalLM
from tests.training.test_train import Recorder, run

# Launches processes, trains, or runs the sandbox: in `make test`, not in `make test-fast`.
pytestmark = pytest.mark.integration


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


FSDP1_BF16 = {
    "precision": "amp_bf16",
    "fsdp_config": "{sharding_strategy: FULL_SHARD, mixed_precision: PURE}",
    "model.attn_config.attn_impl": "flex",
}


@pytest.mark.gpu
def test_fsdp1_bf16_four_microbatches_update_as_one(base: Path, tmp_path: Path) -> None:
    """Composer's FSDP1 on one GPU, bf16: the first update of a padded, prompt-masked batch does not depend
    on its split into 4 microbatches (token-weighted accumulation); bf16 rounding bounds the agreement."""
    from replitlm.training.config import load_train_config
    from replitlm.training.run import train
    from tests.training.test_accumulation import (
        FirstGradient,
        finetuning_overrides,
        instruct_records,
        write_jsonl,
    )
    from tests.training.test_finetuning import LORA_TINY

    data = write_jsonl(tmp_path / "four.jsonl", instruct_records())
    grads = {}
    for microbatch in (1, 4):
        probe = FirstGradient()
        overrides = finetuning_overrides(
            base, data, tmp_path / f"mb{microbatch}", device_train_microbatch_size=microbatch, **FSDP1_BF16
        )
        train(load_train_config(LORA_TINY, overrides), [probe])
        grads[microbatch] = probe.grad.float()
    error = (grads[1] - grads[4]).norm() / grads[4].norm()
    assert error < 2e-2, f"relative gradient difference {error:.2e}"


@pytest.mark.gpu
def test_lora_under_fsdp2_on_a_gpu_saves_and_exports_the_adapter(
    base: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One GPU: FSDP1 refuses LoRA in one process (pytorch#151223); FSDP2 in bf16 saves and exports. LoRA
    under FSDP1 on two ranks is tested on CPUs (tests/training/test_lora.py)."""
    from safetensors.torch import load_file

    from replitlm.training.config import load_train_config
    from replitlm.training.run import train
    from tests.training.test_finetuning import LORA_TINY
    from tests.training.test_lora import lora_overrides

    monkeypatch.setenv("FSDP_VERSION", "2")
    overrides = lora_overrides(base, tmp_path, max_duration="4ba", save_interval="4ba", **FSDP1_BF16)
    train(load_train_config(LORA_TINY, overrides), [])
    adapter = load_file(tmp_path / "adapter" / "adapter_model.safetensors")
    assert adapter and any("lora_B" in k and v.abs().sum() > 0 for k, v in adapter.items())


@pytest.mark.gpu
def test_the_nan_guard_stops_fsdp1_bf16_before_the_update(token_data: Path, tmp_path: Path) -> None:
    from replitlm.training.callbacks import NonFiniteLossError
    from tests.training.test_train import PoisonMicrobatch

    with pytest.raises(NonFiniteLossError, match="at batch 2: stopping before its update"):
        run(
            token_data,
            tmp_path,
            [PoisonMicrobatch(2, 0)],
            max_duration="4ba",
            save_interval="1ba",
            **FSDP1_BF16,
        )
    names = {p.name for p in (tmp_path / "checkpoints").iterdir()}
    assert "ep0-ba1-rank0.pt" in names and not any("ba2" in n for n in names)
