"""Serving an export without replitlm: stock transformers (what vLLM and TGI load with), in a process that cannot
import the package, loads our tokenizer as PreTrainedTokenizerFast and our model as MptForCausalLM, with the ids
of SentencePiece and the logits of ReplitLMForCausalLM. The checks run in tests/serving_check.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import torch

from replitlm import ReplitLMForCausalLM, ReplitLMTokenizer
from replitlm.data.tokenizer_training import corpus_texts, train_tokenizer
from tests.conftest import STDLIB, tiny_model

# Launches processes, trains, or runs the sandbox: in `make test`, not in `make test-fast`.
pytestmark = pytest.mark.integration

CHECK = Path(__file__).with_name("serving_check.py")
# Every 6th file: about 300 files of all kinds (package code, tests, tools) in ~15 s per tokenizer.
SAMPLE = 6


def run_check(cwd: Path, *args: object) -> dict:
    """tests/serving_check.py under `python -I -S` in `cwd`: no PYTHONPATH, no user site, no repo on sys.path,
    and no .pth files, so the project's editable install (a .pth import hook) is not there either; the
    environment's packages are reached through SERVING_SITE_PACKAGES."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")} | {
        "HF_HUB_OFFLINE": "1",
        "SERVING_SITE_PACKAGES": sysconfig.get_paths()["purelib"],
    }
    cmd = [sys.executable, "-I", "-S", str(CHECK), *map(str, args)]
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary.pop("replitlm_imported") is False
    return summary


@pytest.fixture(scope="module")
def replit_folder(tmp_path_factory: pytest.TempPathFactory, tokenizer: ReplitLMTokenizer) -> Path:
    folder = tmp_path_factory.mktemp("replit-tokenizer")
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def trained_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small tokenizer from the project's own training code (as tests/data/test_tokenizer_training.py)."""
    folder = tmp_path_factory.mktemp("trained") / "tok"
    texts = corpus_texts([str(STDLIB / "json"), str(STDLIB / "email")], max_total_bytes=10**7)
    return train_tokenizer(texts, folder, vocab_size=1200)


def assert_sentencepiece_ids(summary: dict, min_files: int) -> None:
    """Same ids as SentencePiece, up to the ties SentencePiece itself breaks by float32 rounding.

    SentencePiece's Viterbi adds scores in float32, so between segmentations of equal (or within-rounding) score
    its choice depends on the running total, i.e. on the text before (a run of 33 spaces is 2+31, 3+30 or 4+29
    spaces in different files); serving_check.py checks that every differing stretch is such a tie.
    """
    print(json.dumps({**summary, "tie_files": len(summary["tie_files"])}))
    assert summary["class"] == "PreTrainedTokenizerFast"
    assert summary["files"] >= min_files
    assert summary["different"] == []
    assert summary["identical"] > summary["files"] / 2
    # tokenizers' Precompiled normalizer drops a combining mark after an NFKC-rewritten character ("ﬖ̳"); that
    # only touches text NFKC rewrites anyway, which never round-trips.
    assert not any(entry["round_trips"] for entry in summary["normalization_differs"])


@pytest.mark.parametrize("which", ["replit", "trained"])
def test_stock_auto_tokenizer_gives_sentencepiece_ids(
    request: pytest.FixtureRequest, tmp_path: Path, which: str
):
    folder = request.getfixturevalue(f"{which}_folder")
    assert_sentencepiece_ids(run_check(tmp_path, "tokenizer", folder, SAMPLE), min_files=250)


@pytest.mark.slow
@pytest.mark.parametrize("which", ["replit", "trained"])
def test_stock_auto_tokenizer_on_the_whole_stdlib(request: pytest.FixtureRequest, tmp_path: Path, which: str):
    folder = request.getfixturevalue(f"{which}_folder")
    assert_sentencepiece_ids(run_check(tmp_path, "tokenizer", folder, 1), min_files=1500)


def test_stock_transformers_loads_an_export_as_mpt(tmp_path: Path, tokenizer: ReplitLMTokenizer) -> None:
    model = tiny_model(n_heads=6)
    export = tmp_path / "export"
    model.save_pretrained(export)
    tokenizer.save_pretrained(export)
    assert json.loads((export / "config.json").read_text())["architectures"] == ["MptForCausalLM"]
    ids = torch.tensor([[5, 17, 300, 42, 7, 99, 123, 4], [1, 2, 3, 4, 5, 6, 7, 8]])
    with torch.no_grad():
        logits = model(ids).logits
        assert torch.equal(
            ReplitLMForCausalLM.from_pretrained(export)(ids).logits, logits
        )  # ours still loads
    torch.save({"input_ids": ids, "logits": logits}, tmp_path / "expected.pt")
    summary = run_check(tmp_path, "model", export, tmp_path / "expected.pt")
    assert summary["class"] == "MptForCausalLM" and summary["architectures"] == ["MptForCausalLM"]
    assert summary["tokenizer"] == "PreTrainedTokenizerFast"
    assert summary["max_abs_diff"] <= 1e-5
