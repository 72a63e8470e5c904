"""Shared fixtures: tiny random ReplitLM models (and transformers' built-in MPT with the same weights),
the real replit tokenizer from ../shared, and the Python stdlib as a corpus of real code."""

from __future__ import annotations

import os
import sysconfig
from pathlib import Path

import pytest
import torch

# Without a GPU the `triton` attention kernel runs in Triton's CPU interpreter. triton.jit reads the variable
# when a kernel is defined and transformers imports triton, so it is set before the imports below.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from transformers import MptConfig, MptForCausalLM

from replitlm import ReplitLMConfig, ReplitLMForCausalLM, ReplitLMTokenizer, config_for_size

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("REPLITLM_SHARED", REPO.parent / "shared"))
SPIECE = SHARED / "replit" / "spiece.model"
STDLIB = Path(sysconfig.get_paths()["stdlib"])


# Fixtures and names through which a test reads the replit tokenizer from ../shared.
NEEDS_SPIECE = {"spiece_path", "tokenizer", "base", "token_data", "module_token_data", "replit_folder"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    no_gpu = pytest.mark.skip(reason="needs a CUDA device")
    no_spiece = pytest.mark.skip(
        reason=f"needs the replit tokenizer at {SPIECE}: set REPLITLM_SHARED to the folder holding replit/spiece.model"
    )
    sources: dict[Path, str] = {}
    for item in items:
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(no_gpu)
        if SPIECE.is_file():
            continue
        path = Path(item.fspath)
        source = sources.setdefault(path, path.read_text(encoding="utf-8"))
        if (
            NEEDS_SPIECE & set(getattr(item, "fixturenames", ()))
            or "SPIECE" in source
            or "tiny_overrides" in source
        ):
            item.add_marker(no_spiece)


def tiny_config(n_heads: int = 4, vocab_size: int = 512, **overrides) -> ReplitLMConfig:
    """A replit-layout config small enough for CPU tests: head_dim 32, 2 layers."""
    return config_for_size("tiny", d_model=32 * n_heads, n_heads=n_heads, vocab_size=vocab_size, **overrides)


def tiny_model(seed: int = 0, **config_kwargs) -> ReplitLMForCausalLM:
    torch.manual_seed(seed)
    return ReplitLMForCausalLM(tiny_config(**config_kwargs)).eval()


def builtin_twin(model: ReplitLMForCausalLM) -> MptForCausalLM:
    """transformers' built-in MPT (the numerics oracle) holding exactly `model`'s weights."""
    ref = MptForCausalLM(MptConfig(**model.config.to_dict())).eval()
    result = ref.load_state_dict(model.state_dict(), strict=False)
    assert result.unexpected_keys == [] and result.missing_keys == ["lm_head.weight"]
    ref.tie_weights()
    return ref


@pytest.fixture(scope="session")
def spiece_path() -> Path:
    if not SPIECE.is_file():  # pytest_collection_modifyitems skips the tests that need it; this is a backstop
        pytest.skip(f"needs the replit tokenizer at {SPIECE} (set REPLITLM_SHARED to the shared/ folder)")
    return SPIECE


@pytest.fixture(scope="session")
def tokenizer(spiece_path: Path) -> ReplitLMTokenizer:
    return ReplitLMTokenizer(vocab_file=str(spiece_path))
