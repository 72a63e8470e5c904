"""What every way of running a sample shares: its limits, how its exit becomes an Outcome, its
environment, and the interpreter samples run with."""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

PYTHON_FLAGS = ["-I", "-S", "-B"]  # isolated, no site (standard library only), no .pyc writing


@dataclass(frozen=True)
class Limits:
    wall_s: float = 10.0  # wall-clock limit; the whole process group is killed after it
    cpu_s: int = 10
    memory_mb: int = 4096  # address space (JVMs and compilers need more: language runners raise it)
    file_mb: int = 64  # largest file the program may write
    processes: int = 256
    open_files: int = 256
    network: bool = False


@dataclass(frozen=True)
class Outcome:
    status: str  # passed | failed | timeout | error
    message: str
    seconds: float

    @property
    def passed(self) -> bool:
        return self.status == "passed"


def outcome(code: int, out: bytes, err: bytes, limits: Limits, expect: str | None, seconds: float) -> Outcome:
    if code == 0 and (expect is None or expect.encode() in out):
        return Outcome("passed", "passed", seconds)
    if code == 0:
        return Outcome("failed", "exited before the tests finished", seconds)
    if code in CPU_LIMIT_CODES and seconds >= limits.cpu_s:
        return Outcome("timeout", f"CPU limit of {limits.cpu_s} s", seconds)
    return Outcome("failed", last_line(err or out) or f"exit code {code}", seconds)


def environment() -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", **toolchains()}


@functools.cache
def toolchains() -> dict[str, str]:
    """Where rustup and the JDK keep their toolchains (HOME is the sample's empty folder)."""
    home = Path.home()
    env = {}
    for key, default in (
        ("RUSTUP_HOME", home / ".rustup"),
        ("CARGO_HOME", home / ".cargo"),
        ("JAVA_HOME", None),
    ):
        value = os.environ.get(key) or (str(default) if default is not None and default.exists() else None)
        if value:
            env[key] = value
    return env


# RLIMIT_CPU sends SIGXCPU at the soft limit and SIGKILL at the hard one; through the shell in between,
# a death by signal n reads as exit status 128 + n.
CPU_LIMIT_CODES = frozenset(code for n in (signal.SIGXCPU, signal.SIGKILL) for code in (-n, 128 + n))


def kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # already gone
        os.killpg(pgid, signal.SIGKILL)


def last_line(output: bytes) -> str:
    # Python 3.11's tracebacks underline the failing expression: those lines say nothing on their own.
    text = output.decode("utf-8", "replace")
    lines = [line for line in text.splitlines() if line.strip() and line.strip(" ^~")]
    return lines[-1][:500] if lines else ""


def base_python() -> Path:
    return Path(os.path.realpath(getattr(sys, "_base_executable", sys.executable)))
