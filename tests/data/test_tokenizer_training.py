"""A tokenizer trained with replit's conventions loads as ReplitLMTokenizer and behaves like replit's."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from replitlm import ReplitLMTokenizer
from tests.conftest import REPO, STDLIB


@pytest.mark.integration  # launches processes or the sandbox
def test_trained_tokenizer_follows_replit_conventions(tmp_path: Path, tokenizer: ReplitLMTokenizer) -> None:
    cmd = [sys.executable, str(REPO / "data_prep" / "train_tokenizer.py"), "--input", str(STDLIB / "json"),
           str(STDLIB / "email"), "--out", str(tmp_path / "tok"), "--vocab-size", "1200"]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    trained = ReplitLMTokenizer.from_pretrained(tmp_path / "tok")
    assert trained.vocab_size == 1200
    # the same special and user-defined pieces at the same ids as replit's tokenizer
    assert trained.convert_ids_to_tokens(list(range(147))) == tokenizer.convert_ids_to_tokens(
        list(range(147))
    )
    assert (trained.unk_token_id, trained.eos_token_id, trained.pad_token_id, trained.bos_token) == (
        0,
        1,
        2,
        None,
    )
    text = "def f(x):\n\treturn x  \r\n\n\n" + " " * 40 + "end "
    ids = trained(text)["input_ids"]
    assert trained.decode(ids) == text
    assert trained("    pass")["input_ids"][0] == 31  # four spaces are one piece
    bad = subprocess.run([*cmd[:-2], "--vocab-size", "100"], capture_output=True, text=True, timeout=600)
    assert bad.returncode == 2 and "--vocab-size" in bad.stderr
