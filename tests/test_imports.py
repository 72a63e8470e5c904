"""Start-up: `import replitlm` and the data-prep path load neither torch nor transformers, every command's
module imports without them (so `--help` answers at once; the times are in scripts/bench/import_time.py), and
AutoTokenizer still knows our folders after `import replitlm`, whichever of the two is imported first."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from replitlm import ReplitLMTokenizer

# Launches processes, trains, or runs the sandbox: in `make test`, not in `make test-fast`.
pytestmark = pytest.mark.integration

HEAVY = ("torch", "transformers", "streaming", "composer", "datasets")
LIGHT_MODULES = [
    "replitlm",
    "replitlm.data.pipeline",
    "replitlm.data.encoding",
    "replitlm.data.instruct",
    "replitlm.data.tokenizer_training",
    *(f"replitlm.cli.{name}" for name in ("train", "prep", "prep_instruct", "tokenizer", "eval", "generate")),
    *(f"replitlm.cli.{name}" for name in ("export", "merge_lora", "quickstart")),
]


def python(code: str) -> str:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize("module", LIGHT_MODULES)
def test_module_imports_without_torch_or_transformers(module: str) -> None:
    loaded = python(
        f"import sys, json, {module}; print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    )
    assert json.loads(loaded) == []


def test_encoding_our_tokenizer_folder_needs_no_transformers(
    tmp_path: Path, tokenizer: ReplitLMTokenizer
) -> None:
    """What each data-prep worker does: load the encoder from a folder saved by ReplitLMTokenizer."""
    tokenizer.save_pretrained(tmp_path)
    code = (
        "import sys, json; from replitlm.data.encoding import TokenEncoder; "
        f"e = TokenEncoder({str(tmp_path)!r}); ids = e.encode(['def f(x):\\n    return x\\n'])[0]; "
        "print(json.dumps([ids, e.eos_id, e.vocab_size, 'transformers' in sys.modules]))"
    )
    ids, eos, vocab, loaded = json.loads(python(code))
    assert not loaded
    assert ids == tokenizer.encode("def f(x):\n    return x\n") and eos == tokenizer.eos_token_id
    assert vocab == len(tokenizer)


@pytest.mark.parametrize("order", ["replitlm first", "transformers first"])
def test_auto_tokenizer_gives_ours_after_import_replitlm(order: str, tmp_path: Path, tokenizer) -> None:
    tokenizer.save_pretrained(tmp_path)
    imports = ["import replitlm", "from transformers import AutoTokenizer"]
    if order == "transformers first":
        imports.reverse()
    code = "; ".join([*imports, f"print(type(AutoTokenizer.from_pretrained({str(tmp_path)!r})).__name__)"])
    assert python(code) == "ReplitLMTokenizer"


def test_lazy_names_are_the_modules_own() -> None:
    import replitlm
    from replitlm.model import ReplitLMForCausalLM

    assert replitlm.ReplitLMForCausalLM is ReplitLMForCausalLM and "ReplitLMForCausalLM" in dir(replitlm)
    with pytest.raises(AttributeError, match="no attribute 'NoSuchName'"):
        replitlm.NoSuchName  # noqa: B018
