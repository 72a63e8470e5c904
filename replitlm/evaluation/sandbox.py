"""Run untrusted generated code: its own process group, a fresh temporary folder, resource limits, no network.

The reference harnesses say plainly that they are not sandboxes. Here every program runs
  * in a fresh temporary directory that is deleted afterwards, with stdin closed and a minimal environment;
  * under resource limits (`prlimit`, or setrlimit in the root fork server): CPU seconds, address space,
    file size, open files and processes;
  * in its own session / process group, which is killed whole (SIGKILL) on timeout and after it exits, so
    leftover children die too;
  * without network where the OS permits a network namespace (`unshare --net`, as root or with user
    namespaces); `network_isolation()` says which, and the harness prints it.
When the harness runs as root (which is exempt from the process limit and may write anywhere) and the
kernel allows namespaces, `containment()` is "root": each worker slot prepares once a mount namespace in
which the whole filesystem is read-only but for private tmpfs mounts on /tmp (the sample's folder is
/tmp/sample), /var/tmp and /dev/shm, emptied after every sample, root's home and the harness's checkout and
virtualenv are hidden, and the toolchains that live under root's home are bind-mounted read-only at their
own paths; and a network namespace without interfaces. A fork server (`slot_fork_server.py`) held in them starts
each sample in its own pid, IPC and mount namespaces (killed whole with its pid 1) as the slot's
unprivileged uid (60000 + slot, so one sample's process limit counts only its own processes), without
capabilities or new privileges. Python programs run in that fresh fork instead of a new interpreter.
The harness itself only reads the program's exit status and the tail of its output, so nothing a sample
does to its own process can take the harness down.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from replitlm.evaluation.execution import (
    PYTHON_FLAGS,
    Limits,
    Outcome,
    base_python,
    environment,
    kill_group,
    outcome,
)
from replitlm.evaluation.root_slots import UID_BASE, Slots, run_contained

DEFAULT_LIMITS = Limits()  # frozen: one shared default is safe

__all__ = [
    "Containment",
    "Limits",
    "Outcome",
    "containment",
    "network_isolation",
    "python_command",
    "run_program",
]


@dataclass(frozen=True)
class Containment:
    mode: str  # "root" (unprivileged uid + namespaces) | "network" (network namespace only) | "none"
    description: str


@functools.cache
def containment() -> Containment:
    """What confines a sample here: the harness prints it. Probed once (it starts worker slot 0 as root)."""
    if os.geteuid() == 0:
        try:
            Slots.release(Slots.acquire())
            return Containment(
                "root",
                f"samples run as unprivileged uids {UID_BASE}+slot in private pid/ipc/mount namespaces, "
                "a network namespace without interfaces, on a read-only filesystem "
                "(writable: private tmpfs /tmp, /var/tmp, /dev/shm)",
            )
        except OSError as exc:
            reason = str(exc).strip().splitlines()[-1:] or ["?"]
            note = f"running as root but namespaces are not permitted ({reason[0]}): "
    else:
        note = ""
    if network_isolation():
        return Containment(
            "network", note + "samples run as this user in a network namespace (no network), under limits"
        )
    return Containment("none", note + "no network namespace here: samples run with the network reachable")


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


def _prlimit(limits: Limits) -> list[str]:
    mb = 1024 * 1024
    return [
        "prlimit",
        f"--cpu={limits.cpu_s}",
        f"--as={limits.memory_mb * mb}",
        f"--fsize={limits.file_mb * mb}",
        f"--nproc={limits.processes}",
        f"--nofile={limits.open_files}",
        "--",
    ]


# A shell stays between the harness and the program (`; exit $?` stops it from exec-ing the program), so a
# sample that kills its parent (os.kill(os.getppid(), 9)) kills that shell, not the harness. In the root
# containment the sample's parent is its pid namespace's init (root, which it cannot signal), and the
# sample is not pid 1, so it keeps the usual signal semantics (SIGXCPU, SIGALRM, ...).
_SHELL = ["sh", "-c", '"$@"; exit $?', "sh"]


def _limited(argv: list[str], limits: Limits) -> list[str]:
    isolation = [] if limits.network else network_isolation()
    return [*isolation, *_SHELL, *_prlimit(limits), *argv]


def run_program(
    argv: list[str], files: dict[str, str], limits: Limits = DEFAULT_LIMITS, expect: str | None = None
) -> Outcome:
    """Write `files` into a fresh folder, run `argv` there under `limits`, and say how it went.

    Passed means exit status 0 and, when `expect` is given, that text on stdout: a program whose last line
    prints it cannot pass by exiting early (sys.exit(0) / os._exit(0) before the tests ran).
    """
    if containment().mode == "root":
        return run_contained(argv, files, limits, expect)
    workdir = Path(tempfile.mkdtemp(prefix="replitlm-exec-"))
    start = time.perf_counter()
    try:
        for name, text in files.items():
            (workdir / name).write_text(text)
        env = {"HOME": str(workdir), **environment()}
        return _execute(_limited(argv, limits), workdir, env, limits, expect, start)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _execute(
    command: list[str], cwd, env: dict[str, str], limits: Limits, expect: str | None, start: float
) -> Outcome:
    try:
        proc = subprocess.Popen(
            command,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            start_new_session=True,  # its own process group: killable as a whole
        )
    except OSError as exc:
        return Outcome("error", f"cannot start {command[0]}: {exc}", 0.0)
    try:
        out, err = proc.communicate(timeout=limits.wall_s)
    except subprocess.TimeoutExpired:
        kill_group(proc.pid)
        proc.communicate()
        return Outcome("timeout", f"timed out after {limits.wall_s:g} s", time.perf_counter() - start)
    kill_group(proc.pid)  # children it left behind
    return outcome(proc.returncode, out, err, limits, expect, time.perf_counter() - start)


def python_command() -> list[str]:
    """A Python interpreter in isolated mode (no user site, no PYTHON* variables, no cwd on sys.path) without
    the site module: samples get the standard library only, and start ~3x faster. In the root containment
    it is the base interpreter (the harness's virtualenv is hidden there), through its own path."""
    python = base_python() if containment().mode == "root" else Path(sys.executable)
    return [str(python), *PYTHON_FLAGS]
