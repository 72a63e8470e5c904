"""`make quickstart` end to end, shrunk: stdlib corpus → tokenizer → MDS → training → HF export → completion →
LoRA on instruct pairs from the corpus → merge → completion; in a clean environment (no PYTHONPATH: the
project as `make install` installs it), as a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from replitlm import ReplitLMForCausalLM, load_tokenizer
from tests.conftest import REPO

# Launches processes, trains, or runs the sandbox: in `make test`, not in `make test-fast`.
pytestmark = pytest.mark.integration


def test_the_quickstart_runs_every_step_and_resumes(tmp_path: Path) -> None:
    run = tmp_path / "qs"
    cmd = [sys.executable, "scripts/quickstart.py", "--run-dir", str(run), "--corpus-mb", "1.5"]
    cmd += ["--tokenizer-mb", "1.5", "max_duration=6ba", "eval_interval=3ba", "save_interval=3ba"]
    cmd += ["progress_bar=false", "eval_subset_num_batches=2", "global_train_batch_size=8"]
    cmd += ["device_train_microbatch_size=8", "max_seq_len=128"]
    for override in (
        "max_duration=4ba",
        "save_interval=2ba",
        "global_train_batch_size=8",
        "progress_bar=false",
    ):
        cmd += ["--lora-override", override]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    first = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    steps = (
        "train a 4096-piece tokenizer",
        "MDS shards",
        "train a tiny ReplitLM",
        "perplexity",
        "complete a prompt",
        "instruct-tune a LoRA adapter",
        "merge the adapter",
        "complete a documented signature",
    )
    for step in steps:
        assert step in first.stdout
    assert "training loss:" in first.stdout and "eval/LanguagePerplexity" in first.stdout
    assert (run / "mds" / "train" / "index.json").exists() and (run / "mds" / "val" / "index.json").exists()
    assert "Python" in (run / "eval" / "perplexity.json").read_text()
    model = ReplitLMForCausalLM.from_pretrained(run / "hf")
    assert model.config.vocab_size == len(load_tokenizer(run / "hf")) == 4096
    # the completion printed is the exported model's greedy continuation of the prompt (stop sequences
    # trimmed), as generate_code computes it here; and the files the quickstart promises are there
    from replitlm.cli.quickstart import PROMPT
    from replitlm.generation import DEFAULT_STOP_SEQUENCES, SamplingConfig, generate_code

    printed = first.stdout.split("complete a prompt")[1]
    sampling = SamplingConfig(
        max_new_tokens=48, do_sample=False, stop_sequences=tuple(DEFAULT_STOP_SEQUENCES)
    )
    (completion,) = generate_code(model.eval(), load_tokenizer(run / "hf"), [PROMPT], sampling)
    assert PROMPT + completion in printed, (completion, printed[-600:])
    for name in ("model.safetensors", "config.json", "spiece.model", "tokenizer_config.json"):
        assert (run / "hf" / name).is_file(), name
    assert (run / "checkpoints" / "latest-rank0.pt").exists() and (
        run / "tokenizer" / "spiece.model"
    ).is_file()

    # the LoRA steps: an adapter trained on functions of the corpus, merged; the completion is the merged model's
    from replitlm.cli.quickstart import LORA_PROMPT

    lora = run / "lora"
    assert "functions:" in first.stdout and "examples ->" in first.stdout  # the pairs the loader built
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        assert (lora / "adapter" / name).is_file(), name
    merged = ReplitLMForCausalLM.from_pretrained(lora / "merged").eval()
    assert any(
        not torch.equal(a, b)
        for a, b in zip(merged.state_dict().values(), model.state_dict().values(), strict=True)
    ), "the merged model is the base: the adapter learned nothing"
    (completion,) = generate_code(merged, load_tokenizer(lora / "merged"), [LORA_PROMPT], sampling)
    assert LORA_PROMPT + completion in first.stdout.split("complete a documented signature")[1]

    # a second run skips the finished steps and finds the training finished (autoresume)
    again = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "train a 4096-piece tokenizer" not in again.stdout and "MDS shards" not in again.stdout
    assert "at batch 6" in again.stdout and "at batch 4" in again.stdout  # the base and the LoRA run
