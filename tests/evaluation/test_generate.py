"""Sampling completions from a model for a task: the JSONL grows as it goes and resumes after a crash."""

from __future__ import annotations

import json
from pathlib import Path

from replitlm.evaluation.generate import BIGCODE_STOPS, completed_counts, eval_sampling, to_completion
from replitlm.evaluation.tasks import Problem
from tests.conftest import tiny_model


def test_completion_convention() -> None:
    problem = Problem("t", "def f():\n", "", "")
    assert (
        to_completion(problem, "\n    return 1") == "    return 1"
    )  # prompt + completion = what was written
    assert to_completion(problem, " pass") == " pass"  # no newline generated: appended as is
    settings = eval_sampling()
    assert (settings.temperature, settings.top_p, settings.top_k) == (0.2, 0.95, 0)
    assert settings.stop_sequences == BIGCODE_STOPS and eval_sampling(greedy=True).do_sample is False


def test_eval_samples_scores_and_resumes(tmp_path: Path, tokenizer) -> None:
    from replitlm.cli.eval import main

    folder = tmp_path / "model"
    tiny_model(vocab_size=32768).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    out = tmp_path / "eval"
    common = [
        "--model",
        str(folder),
        "--task",
        "humaneval",
        "--limit",
        "2",
        "--max-length",
        "200",
        "--out",
        str(out),
    ]
    assert main([*common, "--n", "2", "--k", "1", "2"]) == 0
    samples = out / "humaneval_samples.jsonl"
    lines = [json.loads(line) for line in samples.read_text().splitlines()]
    assert [s["task_id"] for s in lines] == ["HumanEval/0", "HumanEval/0", "HumanEval/1", "HumanEval/1"]
    summary = json.loads(Path(f"{samples}_summary.json").read_text())
    assert summary["problems"] == 2 and summary["samples"] == 4 and "pass@2" in summary
    assert len(Path(f"{samples}_results.jsonl").read_text().splitlines()) == 4

    with open(samples, "a") as f:
        f.write('{"task_id": "HumanEval/0", "compl')  # a crash in the middle of a line
    assert completed_counts(samples) == {"HumanEval/0": 2, "HumanEval/1": 2}
    assert main([*common, "--n", "3", "--k", "1", "--greedy"]) == 0
    lines = [json.loads(line) for line in samples.read_text().splitlines()]
    assert len(lines) == 6 and [s["task_id"] for s in lines[4:]] == ["HumanEval/0", "HumanEval/1"]
