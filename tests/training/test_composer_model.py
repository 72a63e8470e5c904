"""The Composer wrapper: no KV cache outside generation, and llm-foundry's FLOPs formula for MFU."""

from __future__ import annotations

import torch

from replitlm.training.composer_model import ComposerReplitLM
from tests.conftest import tiny_model


def batch() -> dict[str, torch.Tensor]:
    ids = torch.randint(3, 500, (2, 16), generator=torch.Generator().manual_seed(0))
    return {"input_ids": ids, "labels": ids.clone()}


def test_training_and_eval_forwards_build_no_kv_cache() -> None:
    model = tiny_model()
    assert model.config.use_cache, "the config asks for a cache (generation wants it)"
    composer = ComposerReplitLM(model)
    assert model(**batch()).past_key_values is not None  # the plain model, as generation calls it
    assert composer(batch()).past_key_values is None
    composer.eval()
    with torch.no_grad():
        assert composer.eval_forward(batch()) is not None
        assert composer(batch()).past_key_values is None


def test_flops_per_batch_is_llm_foundrys_formula() -> None:
    """6 FLOPs per parameter per token, plus 3 x 2·2·S·d per layer per token for attention (the full S×S
    square, as llm-foundry counts it: MFU then compares with published MPT numbers)."""
    composer = ComposerReplitLM(tiny_model())
    config, n = composer.config, composer.n_params
    for seq in (128, 2048):
        per_token = composer.flops_per_batch({"input_ids": torch.empty(4, seq)}) / (4 * seq)
        assert per_token == 6 * n + 3 * 4 * config.n_layers * config.d_model * seq
