"""Stop sequences, post-processing, streaming and the generate CLI, with the real tokenizer."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from replitlm import ReplitLMForCausalLM, ReplitLMTokenizer
from replitlm.generation import (
    SamplingConfig,
    StopAwareStreamer,
    completion_ids,
    generate_code,
    postprocess,
    truncate_at_stop,
)
from tests.conftest import REPO, tiny_config

SCRIPT = "    return a + b\n\ndef unrelated():\n    pass\n"


class ScriptedLM(ReplitLMForCausalLM):
    """A real model whose last-position logits are pushed towards a fixed script of tokens.

    Every row continues with the script from its own prompt's end, whatever its padding, so generation,
    stop criteria, left padding and post-processing are exercised on known text.
    """

    script: list[int]
    prompt_len: int

    def forward(self, input_ids=None, attention_mask=None, **kwargs):
        out = super().forward(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        step = attention_mask.shape[1] - self.prompt_len
        token = self.script[step] if step < len(self.script) else 1
        out.logits[:, -1, token] += 1e4
        return out


def scripted_model(tokenizer: ReplitLMTokenizer, prompt_len: int) -> ScriptedLM:
    torch.manual_seed(0)
    model = ScriptedLM(tiny_config(vocab_size=tokenizer.vocab_size)).eval()
    model.script = tokenizer(SCRIPT)["input_ids"]
    model.prompt_len = prompt_len
    return model


def test_truncate_and_postprocess() -> None:
    assert truncate_at_stop("a\nb\ndef c", ["\ndef", "\nb"]) == "a"
    assert truncate_at_stop("no stop here", ["\ndef"]) == "no stop here"
    assert postprocess("    return 1   \n\n\nprint(2)") == "    return 1"
    assert completion_ids([5, 6, 2, 1, 7], eos_token_id=1, pad_token_id=2) == [5, 6]


@pytest.mark.parametrize("use_cache", [True, False])
def test_generate_code_stops_at_stop_sequence(tokenizer: ReplitLMTokenizer, use_cache: bool) -> None:
    prompts = ["def add(a, b):\n", "# add two numbers\ndef add(a, b):\n"]
    lengths = [len(tokenizer(p)["input_ids"]) for p in prompts]
    model = scripted_model(tokenizer, prompt_len=max(lengths))  # the batch is left-padded to the longest
    sampling = SamplingConfig(do_sample=False, max_new_tokens=40, use_cache=use_cache)
    completions = generate_code(model, tokenizer, prompts, sampling)
    assert completions == ["    return a + b", "    return a + b"]


def test_generation_halts_early_and_at_eos(tokenizer: ReplitLMTokenizer) -> None:
    prompt = "def add(a, b):\n"
    model = scripted_model(tokenizer, prompt_len=len(tokenizer(prompt)["input_ids"]))
    batch = tokenizer([prompt], return_tensors="pt")
    out = model.generate(
        **batch, max_new_tokens=40, do_sample=False, stop_strings=["\ndef"], tokenizer=tokenizer
    )
    generated = tokenizer.decode(out[0, batch["input_ids"].shape[1] :])
    assert generated.endswith("\ndef") and "unrelated" not in generated  # stopped right after the stop string
    model.script = tokenizer("    return a")["input_ids"]  # then EOS (id 1)
    assert generate_code(model, tokenizer, [prompt], SamplingConfig(do_sample=False)) == ["    return a"]


def test_sampling_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="temperature"):
        SamplingConfig(temperature=0)
    with pytest.raises(ValueError, match="top_p"):
        SamplingConfig(top_p=1.5)
    with pytest.raises(ValueError, match="max_new_tokens"):
        SamplingConfig(max_new_tokens=0)


def test_streamer_never_prints_the_stop_sequence(tokenizer: ReplitLMTokenizer) -> None:
    prompt = "def add(a, b):\n"
    model = scripted_model(tokenizer, prompt_len=len(tokenizer(prompt)["input_ids"]))
    sink = io.StringIO()
    streamer = StopAwareStreamer(tokenizer, ["\ndef"], out=sink)
    (completion,) = generate_code(
        model, tokenizer, [prompt], SamplingConfig(do_sample=False, stop_sequences=["\ndef"]), streamer
    )
    assert completion == "    return a + b"
    assert sink.getvalue() == "    return a + b\n"


@pytest.mark.integration  # launches processes or the sandbox
def test_generate_cli_streams_a_completion(
    tokenizer: ReplitLMTokenizer, spiece_path: Path, tmp_path: Path
) -> None:
    torch.manual_seed(0)
    ReplitLMForCausalLM(tiny_config(vocab_size=tokenizer.vocab_size)).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    cmd = [sys.executable, str(REPO / "scripts" / "generate.py"), str(tmp_path), "--prompt", "import os\n"]
    result = subprocess.run(
        [*cmd, "--max-new-tokens", "8", "--greedy", "--no-stop"], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("import os\n") and len(result.stdout) > len("import os\n")
    missing = subprocess.run(
        [*cmd[:3], "--prompt-file", str(tmp_path / "nope.py")], capture_output=True, text=True, timeout=300
    )
    assert missing.returncode == 2 and "nope.py does not exist" in missing.stderr
