"""HumanEval-X: each language's canonical solutions pass under its toolchain, empty bodies fail; a missing
toolchain is a clear message. Compiled languages run a handful of problems here (a compile takes ~1 s);
`python eval/eval.py --task humaneval-x-LANG --canonical` runs all 164 (results in the README)."""

from __future__ import annotations

import shutil

import pytest

from replitlm.evaluation.score import execute
from replitlm.evaluation.tasks import TaskError, load_task

# Launches processes, trains, or runs the sandbox: in `make test`, not in `make test-fast`.
pytestmark = pytest.mark.integration

TOOLS = {"python": None, "cpp": "g++", "js": "node", "java": "javac", "rust": "rustc", "go": "go"}


@pytest.mark.parametrize("language", sorted(TOOLS))
def test_canonical_pass_and_empty_fail(language: str) -> None:
    tool = TOOLS[language]
    if tool and not shutil.which(tool):
        with pytest.raises(TaskError, match=f"needs `{tool}` on PATH"):
            load_task(f"humaneval-x-{language}")
        pytest.skip(f"{tool} is not installed here")
    if language == "go":
        with pytest.raises(TaskError, match="testify"):
            load_task("humaneval-x-go")
        return
    task = load_task(f"humaneval-x-{language}")
    assert len(task.problems) == 164
    problems = task.problems if language == "python" else task.problems[:4]
    good = execute(task, [{"task_id": p.task_id, "completion": p.canonical_solution} for p in problems])
    failing = {p.task_id for p, o in zip(problems, good, strict=True) if not o.passed}
    assert failing <= task.known_broken, [o.message for o in good if not o.passed][:3]
    empty = execute(task, [{"task_id": p.task_id, "completion": ""} for p in problems[:4]])
    assert not any(o.passed for o in empty)


EARLY_EXIT = {
    "cpp": "    exit(0);\n",
    "java": "        System.exit(0);\n",
    "js": "  process.exit(0);\n",
    "rust": "    std::process::exit(0);\n",
}


@pytest.mark.parametrize("language", sorted(EARLY_EXIT))
def test_an_early_exit_0_in_the_completion_fails(language: str) -> None:
    """exit(0) before the tests ran is a failure, as sys.exit(0) is in Python: the program must print a
    fresh random token after its tests. The same solution without the exit passes."""
    if not shutil.which(TOOLS[language]):
        pytest.skip(f"{TOOLS[language]} is not installed here")
    task = load_task(f"humaneval-x-{language}")
    problem = task.problems[0]
    samples = [
        {"task_id": problem.task_id, "completion": EARLY_EXIT[language] + problem.canonical_solution},
        {"task_id": problem.task_id, "completion": problem.canonical_solution},
    ]
    early, whole = execute(task, samples, progress=False)
    assert early.status == "failed" and early.message == "exited before the tests finished", early
    assert whole.passed, whole
