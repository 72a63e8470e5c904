"""Run untrusted generated code: its own process group, a fresh temporary folder, resource limits, no network.

The reference harnesses say plainly that they are not sandboxes. Here every program runs
  * in a fresh temporary directory that is deleted afterwards, with stdin closed and a minimal environment;
  * under `prlimit` limits: CPU seconds, address space, file size, open files and processes (the process
    limit binds non-root users only: root is exempt from RLIMIT_NPROC, so run evaluations as a normal user);
  * in its own session / process group, which is killed whole (SIGKILL) on timeout and after it exits, so
    leftover children die too;
  * without network where the OS permits a network namespace (`unshare --net`, as root or with user
    namespaces); `network_isolation()` says which, and the harness prints it.
The harness itself only reads the program's exit status and the tail of its output, so nothing a sample
does to its own process can take the harness down.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path


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


@functools.cache
def network_isolation() -> list[str]:
    """The command prefix that gives a program an empty network namespace here, or [] if none is allowed."""
    for prefix in (["unshare", "--net"], ["unshare", "--net", "--map-root-user"]):
        if shutil.which("unshare"):
            try:
                if subprocess.run([*prefix, "true"], capture_output=True, timeout=10).returncode == 0:
                    return prefix
            except (OSError, subprocess.TimeoutExpired):
                pass
    return []


def _limited(argv: list[str], limits: Limits) -> list[str]:
    mb = 1024 * 1024
    prlimit = [
        "prlimit",
        f"--cpu={limits.cpu_s}",
        f"--as={limits.memory_mb * mb}",
        f"--fsize={limits.file_mb * mb}",
        f"--nproc={limits.processes}",
        f"--nofile={limits.open_files}",
        "--",
    ]
    isolation = [] if limits.network else network_isolation()
    # A shell stays between the harness and the program (`; exit $?` stops it from exec-ing the program),
    # so a sample that kills its parent (os.kill(os.getppid(), 9)) kills that shell, not the harness.
    shell = ["sh", "-c", '"$@"; exit $?', "sh"]
    return [*isolation, *shell, *prlimit, *argv]


def run_program(
    argv: list[str], files: dict[str, str], limits: Limits = Limits(), expect: str | None = None
) -> Outcome:
    """Write `files` into a fresh folder, run `argv` there under `limits`, and say how it went.

    Passed means exit status 0 and, when `expect` is given, that text on stdout: a program whose last line
    prints it cannot pass by exiting early (sys.exit(0) / os._exit(0) before the tests ran).
    """
    workdir = Path(tempfile.mkdtemp(prefix="replitlm-exec-"))
    start = time.perf_counter()
    try:
        for name, text in files.items():
            (workdir / name).write_text(text)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(workdir),
            "LANG": "C.UTF-8",
            **_toolchains(),
        }
        try:
            proc = subprocess.Popen(
                _limited(argv, limits),
                cwd=workdir,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
                start_new_session=True,  # its own process group: killable as a whole
            )
        except OSError as exc:
            return Outcome("error", f"cannot start {argv[0]}: {exc}", 0.0)
        try:
            out, err = proc.communicate(timeout=limits.wall_s)
        except subprocess.TimeoutExpired:
            _kill_group(proc.pid)
            proc.communicate()
            return Outcome("timeout", f"timed out after {limits.wall_s:g} s", time.perf_counter() - start)
        _kill_group(proc.pid)  # children it left behind
        seconds = time.perf_counter() - start
        if proc.returncode == 0 and (expect is None or expect.encode() in out):
            return Outcome("passed", "passed", seconds)
        if proc.returncode == 0:
            return Outcome("failed", "exited before the tests finished", seconds)
        if proc.returncode in _CPU_LIMIT_CODES and seconds >= limits.cpu_s:
            return Outcome("timeout", f"CPU limit of {limits.cpu_s} s", seconds)
        return Outcome("failed", _last_line(err or out) or f"exit code {proc.returncode}", seconds)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@functools.cache
def _toolchains() -> dict[str, str]:
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
_CPU_LIMIT_CODES = frozenset(code for n in (signal.SIGXCPU, signal.SIGKILL) for code in (-n, 128 + n))


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # already gone
        os.killpg(pgid, signal.SIGKILL)


def _last_line(output: bytes) -> str:
    lines = [line for line in output.decode("utf-8", "replace").splitlines() if line.strip()]
    return lines[-1][:500] if lines else ""


def python_command() -> list[str]:
    """This interpreter in isolated mode (no user site, no PYTHON* variables, no cwd on sys.path)."""
    return [sys.executable, "-I", "-B"]
