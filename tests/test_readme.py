"""The README's Python examples run as written (the hub id swapped for a local tiny model)."""

from __future__ import annotations

import re

import pytest
import torch

from replitlm import ReplitLMForCausalLM
from tests.conftest import REPO, tiny_config

BLOCKS = re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(), flags=re.S)


def test_readme_has_examples() -> None:
    assert len(BLOCKS) >= 2


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs(index: int, tmp_path, tokenizer, monkeypatch) -> None:
    torch.manual_seed(0)
    ReplitLMForCausalLM(tiny_config(vocab_size=tokenizer.vocab_size)).save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    monkeypatch.chdir(tmp_path)
    code = BLOCKS[index].replace('"replit/replit-code-v1-3b"', repr(str(tmp_path / "model")))
    code = code.replace("max_new_tokens=100", "max_new_tokens=5")
    exec(compile(code, f"README.md python block {index}", "exec"), {})
