"""Composer checkpoint -> HF folder, on a checkpoint laid out as Composer writes one (no training run): the
weights bit for bit, the tokenizer files by kind, a dtype, and the errors that name the checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from replitlm import ReplitLMForCausalLM
from replitlm.checkpoint import CheckpointError
from replitlm.export import composer_to_hf, read_composer_checkpoint
from tests.conftest import tiny_model

TOKENIZER_CONFIG = {"tokenizer_class": "ReplitLMTokenizer", "eos_token": "<|endoftext|>"}


def composer_checkpoint(model: ReplitLMForCausalLM, path: Path) -> Path:
    """What Composer's HuggingFaceModel saves: weights under `model.`, the HF metadata under integrations."""
    tokenizer = {
        "tokenizer_config.json": {"content": TOKENIZER_CONFIG, "file_extension": ".json"},
        "spiece.model": {"content": b"\x00proto bytes\xff", "file_extension": ".model"},
        "vocab.txt": {"content": ["a", "b"], "file_extension": ".txt"},
    }
    state = {
        "state": {
            "model": {f"model.{k}": v for k, v in model.state_dict().items()} | {"other.x": torch.zeros(1)},
            "integrations": {
                "huggingface": {
                    "model": {"config": {"content": model.config.to_dict()}},
                    "tokenizer": tokenizer,
                }
            },
        }
    }
    torch.save(state, path)
    return path


def test_a_composer_checkpoint_becomes_the_same_model_with_its_tokenizer_files(tmp_path: Path) -> None:
    model = tiny_model(seed=3)
    out = composer_to_hf(composer_checkpoint(model, tmp_path / "ep0-ba4-rank0.pt"), tmp_path / "hf")
    loaded = ReplitLMForCausalLM.from_pretrained(out)
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
    assert json.loads((out / "tokenizer_config.json").read_text()) == TOKENIZER_CONFIG
    assert (out / "spiece.model").read_bytes() == b"\x00proto bytes\xff"
    assert (out / "vocab.txt").read_text() == "a\nb"
    half = composer_to_hf(tmp_path / "ep0-ba4-rank0.pt", tmp_path / "bf16", dtype=torch.bfloat16)
    with safe_open(str(half / "model.safetensors"), framework="pt") as f:  # as stored, not as loaded
        weight = f.get_tensor("transformer.wte.weight")
    assert weight.dtype == torch.bfloat16 and torch.equal(weight, model.transformer.wte.weight.bfloat16())
    assert not list(tmp_path.glob(".*"))  # nothing half-written beside the outputs


def test_a_checkpoint_without_tokenizer_files_converts_without_them(tmp_path: Path) -> None:
    path = composer_checkpoint(tiny_model(), tmp_path / "ckpt.pt")
    state = torch.load(path, weights_only=False)
    del state["state"]["integrations"]["huggingface"]["tokenizer"]
    torch.save(state, path)
    out = composer_to_hf(path, tmp_path / "hf")
    assert sorted(p.name for p in out.iterdir()) == [
        "config.json",
        "generation_config.json",
        "model.safetensors",
    ]


def test_checkpoints_that_are_not_ours_are_named(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"nope\.pt: no such checkpoint"):
        read_composer_checkpoint(tmp_path / "nope.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a pickle")
    with pytest.raises(CheckpointError, match=r"junk\.pt: not a readable Composer checkpoint"):
        read_composer_checkpoint(tmp_path / "junk.pt")
    torch.save({"state": {"model": {}}}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match=r"other\.pt: a Composer checkpoint of this project's trainer"):
        read_composer_checkpoint(tmp_path / "other.pt")
    model = tiny_model()
    path = composer_checkpoint(model, tmp_path / "cut.pt")
    state = torch.load(path, weights_only=False)
    del state["state"]["model"]["model.transformer.wte.weight"]
    torch.save(state, path)
    with pytest.raises(
        CheckpointError, match=r"do not fit the config: missing \[transformer\.wte\.weight\], unexpected \[\]"
    ):
        composer_to_hf(path, tmp_path / "hf")
    assert not (tmp_path / "hf").exists()
