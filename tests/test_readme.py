"""The Python examples of the README and docs/ run as written (the hub id swapped for a local tiny model)."""

from __future__ import annotations

import re

import pytest
import torch

from replitlm import ReplitLMForCausalLM
from tests.conftest import REPO, tiny_config

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
BLOCKS = [
    block for page in PAGES for block in re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S)
]


def test_readme_has_examples() -> None:
    assert len(BLOCKS) >= 2


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs(index: int, tmp_path, tokenizer, monkeypatch, capsys) -> None:
    torch.manual_seed(0)
    ReplitLMForCausalLM(tiny_config(vocab_size=tokenizer.vocab_size)).save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    monkeypatch.chdir(tmp_path)
    code = BLOCKS[index].replace('"replit/replit-code-v1-3b"', repr(str(tmp_path / "model")))
    code = code.replace("max_new_tokens=100", "max_new_tokens=5")
    namespace: dict = {}
    exec(compile(code, f"README.md python block {index}", "exec"), namespace)
    assert check_results(namespace, capsys.readouterr().out, tmp_path), "no check knows this example"


def check_results(ns: dict, printed: str, cwd) -> int:
    """What each example promises, checked on what it left behind (its variables, output and files);
    returns how many of the checks applied."""
    import math

    applied = 0
    model = ns.get("model")
    if isinstance(model, ReplitLMForCausalLM) and "generate_code" in ns:  # "Using the model"
        assert model.dtype == torch.bfloat16 and model.config.attn_config["attn_impl"] == "flex"
        assert printed.endswith("\n") and len(printed) < 400, "one trimmed completion of <= 5 tokens"
        applied += 1
    if "big" in ns:  # "The pieces": preset, save, transformers' MPT, meta then initialised
        assert (cwd / "runs" / "example" / "model.safetensors").is_file()
        big = ns["big"]
        assert all(p.device.type == "cpu" and math.isfinite(float(p.abs().sum())) for p in big.parameters())
        assert big.config.d_model == 768 and ns["replit_names"].d_model == 2560
        assert any(float(p.std()) > 0 for p in big.parameters()), "initialised, not left empty"
        applied += 1
    return applied
