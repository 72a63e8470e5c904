"""One optimizer step does not depend on how its global batch is split into microbatches (or ranks).

Each microbatch's loss is a mean over its loss-generating tokens, so microbatches must be weighed by those
tokens, not by their sample counts. Fine-tuning data makes the difference visible: prompts are masked, rows
are padded to the longest one, and the four examples carry 2 to ~130 loss tokens each.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from composer.core import Callback, State
from composer.loggers import Logger

from replitlm.training.config import load_train_config
from replitlm.training.data import tokens_in_batch
from replitlm.training.run import train
from tests.conftest import STDLIB
from tests.training.test_finetuning import LORA_TINY

# Launches processes, trains, or runs the sandbox: in `make test`, not in `make test-fast`.
pytestmark = pytest.mark.integration


def instruct_records() -> list[dict[str, str]]:
    """Four real-code examples whose responses differ ~60x in length (and whose prompts differ too)."""
    source = (STDLIB / "textwrap.py").read_text().splitlines()
    return [
        {"prompt": "# Is 7 prime? Answer yes or no.\n", "response": "yes"},
        {"prompt": "def add(a, b):\n    ", "response": "return a + b"},
        {"prompt": "# textwrap, the start of the module\n", "response": "\n".join(source[:14])},
        {
            "prompt": "# the TextWrapper class of textwrap.py, in part:\n",
            "response": "\n".join(source[60:72]),
        },
    ]


def write_jsonl(path: Path, records: list[dict[str, str]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def finetuning_overrides(base: Path, data: Path, run_dir: Path, **extra: object) -> list[str]:
    """Full fine-tuning of the tiny base on `data`, one example per row (padded), in input order."""
    values = {
        "model.pretrained_model_name_or_path": str(base),
        "variables.data": str(data),
        "variables.run_dir": str(run_dir),
        "lora": "null",
        "train_loader.dataset.packing": False,
        "train_loader.dataset.shuffle": False,
        "max_seq_len": 128,
        "global_train_batch_size": 4,
        "device_train_microbatch_size": 4,
        "optimizer.lr": 1e-3,
        "algorithms.gradient_clipping": "null",
        "max_duration": "1ba",
        "save_folder": "null",
        "autoresume": False,
        "callbacks.hf_export": "null",
        "progress_bar": False,
        **extra,
    }
    return [f"{k}={v}" for k, v in values.items()]


class FirstGradient(Callback):
    """Every parameter's gradient after the first batch's microbatches, as one vector."""

    def __init__(self) -> None:
        self.grad: torch.Tensor | None = None
        self.tokens: list[int] = []

    def after_train_batch(self, state: State, logger: Logger) -> None:
        if self.grad is None:
            self.grad = torch.cat([p.grad.flatten() for p in state.model.parameters() if p.grad is not None])

    def batch_end(self, state: State, logger: Logger) -> None:
        self.tokens.append(int(state.timestamp.token))


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_jsonl(tmp_path_factory.mktemp("instruct") / "four.jsonl", instruct_records())


def first_gradient(base: Path, data: Path, run_dir: Path, microbatch: int) -> FirstGradient:
    probe = FirstGradient()
    overrides = finetuning_overrides(base, data, run_dir, device_train_microbatch_size=microbatch)
    train(load_train_config(LORA_TINY, overrides), [probe])
    return probe


def test_the_examples_differ_in_loss_tokens_and_padding(tokenizer, data: Path) -> None:
    from replitlm.training.config import DatasetSection
    from replitlm.training.data import TokenCollator
    from replitlm.training.finetuning import build_samples

    samples, _ = build_samples(DatasetSection(path=str(data)), tokenizer, 128, "train_loader")
    batch = TokenCollator(128, 32768, 0, use_sequence_id=False)(samples)
    per_row = [tokens_in_batch({k: v[i : i + 1] for k, v in batch.items()}) for i in range(4)]
    loss_tokens = [c["loss_generating"] for c in per_row]
    assert min(loss_tokens) <= 3 and max(loss_tokens) >= 100, loss_tokens
    assert "attention_mask" in batch, "rows of different lengths are padded"
    whole = tokens_in_batch(batch)
    assert whole["total"] == int(batch["attention_mask"].sum()) < batch["input_ids"].numel()
    assert whole["loss_generating"] == sum(loss_tokens)


def test_the_update_does_not_depend_on_the_microbatch_size(base: Path, data: Path, tmp_path: Path) -> None:
    whole = first_gradient(base, data, tmp_path / "mb4", 4)
    for microbatch in (1, 2):
        split = first_gradient(base, data, tmp_path / f"mb{microbatch}", microbatch)
        error = (split.grad - whole.grad).norm() / whole.grad.norm()
        assert error < 1e-5, f"microbatch {microbatch} vs 4: relative gradient difference {error:.2e}"
    # `tok` durations and the speed monitor count the real tokens of the batch, not its padding
    assert whole.tokens == split.tokens
    assert whole.tokens[0] == sum(min(len(t), 128) for t in _encoded_rows(base, data))


def _encoded_rows(base: Path, data: Path) -> list[list[int]]:
    from replitlm.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(str(base))
    rows = []
    for record in instruct_records():
        prompt, response = tokenizer.encode_batch([record["prompt"], record["response"]])
        rows.append(prompt + response + [tokenizer.eos_token_id])
    return rows


def test_two_ranks_of_microbatch_2_update_as_one_rank_of_4(base: Path, tmp_path: Path) -> None:
    """DDP over gloo, under Composer's launcher: 3 steps, gradients and final weights as in one process."""
    import os
    import subprocess

    from replitlm import ReplitLMForCausalLM
    from tests.conftest import REPO
    from tests.training.dist_driver import GradNorms
    from tests.training.test_distributed import COMPOSER, free_port

    records = [dict(r, prompt=f"# example {i}\n" + r["prompt"]) for i in range(3) for r in instruct_records()]
    data = write_jsonl(tmp_path / "twelve.jsonl", records)

    def overrides(run_dir: Path, microbatch: int) -> list[str]:
        export = f"{{save_folder: {run_dir / 'hf'}}}"
        return finetuning_overrides(
            base,
            data,
            run_dir,
            device_train_microbatch_size=microbatch,
            max_duration="3ba",
            **{"optimizer.name": "decoupled_adamw", "callbacks.hf_export": export},
        )

    reference = GradNorms()
    train(load_train_config(LORA_TINY, overrides(tmp_path / "one", 4)), [reference])
    out = tmp_path / "driver.json"
    cmd = [*COMPOSER, "-n", "2", "--master_port", str(free_port()), "tests/training/dist_driver.py", str(out)]
    proc = subprocess.run(
        [*cmd, str(LORA_TINY), *overrides(tmp_path / "two", 2)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    result = json.loads(out.read_text())
    assert result["world"] == 2
    assert result["grad_norms"] == pytest.approx(reference.norms, rel=1e-5)
    ours = ReplitLMForCausalLM.from_pretrained(tmp_path / "two" / "hf").state_dict()
    ref = ReplitLMForCausalLM.from_pretrained(tmp_path / "one" / "hf").state_dict()
    for name, tensor in ref.items():
        torch.testing.assert_close(ours[name], tensor, rtol=1e-5, atol=1e-6, msg=name)
