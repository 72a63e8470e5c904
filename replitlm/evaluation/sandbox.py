"""Run untrusted generated code: its own process group, a fresh temporary folder, resource limits, no network.

The reference harnesses say plainly that they are not sandboxes. Here every program runs
  * in a fresh temporary directory that is deleted afterwards, with stdin closed and a minimal environment;
  * under `prlimit` limits: CPU seconds, address space, file size, open files and processes;
  * in its own session / process group, which is killed whole (SIGKILL) on timeout and after it exits, so
    leftover children die too;
  * without network where the OS permits a network namespace (`unshare --net`, as root or with user
    namespaces); `network_isolation()` says which, and the harness prints it.
When the harness runs as root (which is exempt from the process limit and may write anywhere) and the
kernel allows namespaces, each program also runs as an unprivileged uid of its own worker slot (60000 +
slot), in its own pid, IPC, network and mount namespaces, on a read-only view of the filesystem whose only
writable places are private tmpfs mounts on /tmp (its folder: /tmp/sample), /var/tmp and /dev/shm, emptied
after every sample; root's home and the harness's checkout and virtualenv are hidden, the toolchains that
live under root's home are bind-mounted read-only at their own paths. See `containment()`.
The harness itself only reads the program's exit status and the tail of its output, so nothing a sample
does to its own process can take the harness down.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import functools
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

UID_BASE = 60000  # worker slot n runs its samples as uid/gid UID_BASE + n (root containment)
SAMPLE_DIR = "/tmp/sample"  # the sample's folder inside the root containment


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


@dataclass(frozen=True)
class Containment:
    mode: str  # "root" (unprivileged uid + namespaces) | "network" (network namespace only) | "none"
    description: str


@functools.cache
def containment() -> Containment:
    """What confines a sample here: the harness prints it. Probed once (it starts worker slot 0 as root)."""
    if os.geteuid() == 0:
        try:
            _Slots.release(_Slots.acquire())
            return Containment(
                "root",
                f"samples run as unprivileged uids {UID_BASE}+slot in private pid/ipc/network/mount "
                "namespaces on a read-only filesystem (writable: private tmpfs /tmp, /var/tmp, /dev/shm)",
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
# containment the shell is the pid namespace's init, which the program cannot signal, and a program that
# is not pid 1 keeps the usual signal semantics (SIGXCPU, SIGALRM, ...).
_SHELL = ["sh", "-c", '"$@"; exit $?', "sh"]


def _limited(argv: list[str], limits: Limits) -> list[str]:
    isolation = [] if limits.network else network_isolation()
    return [*isolation, *_SHELL, *_prlimit(limits), *argv]


def run_program(
    argv: list[str], files: dict[str, str], limits: Limits = Limits(), expect: str | None = None
) -> Outcome:
    """Write `files` into a fresh folder, run `argv` there under `limits`, and say how it went.

    Passed means exit status 0 and, when `expect` is given, that text on stdout: a program whose last line
    prints it cannot pass by exiting early (sys.exit(0) / os._exit(0) before the tests ran).
    """
    if containment().mode == "root":
        return _run_contained(argv, files, limits, expect)
    workdir = Path(tempfile.mkdtemp(prefix="replitlm-exec-"))
    start = time.perf_counter()
    try:
        for name, text in files.items():
            (workdir / name).write_text(text)
        env = {"HOME": str(workdir), **_environment()}
        return _execute(_limited(argv, limits), workdir, env, limits, expect, start)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _run_contained(argv: list[str], files: dict[str, str], limits: Limits, expect: str | None) -> Outcome:
    start = time.perf_counter()
    try:
        slot = _Slots.acquire()
    except OSError as exc:
        return Outcome("error", f"cannot start a sandbox slot: {exc}", 0.0)
    try:
        workdir = slot.root / SAMPLE_DIR.lstrip("/")  # the slot's /tmp/sample, seen from here
        workdir.mkdir()
        os.chown(workdir, slot.uid, slot.uid)
        for name, text in files.items():
            (workdir / name).write_text(text)
            os.chown(workdir / name, slot.uid, slot.uid)
        env = {"HOME": SAMPLE_DIR, "TMPDIR": "/tmp", **_environment()}
        outcome = _execute(slot.command(argv, limits), "/", env, limits, expect, start)
        if outcome.status == "timeout":
            slot.kill_all()
        return outcome
    finally:
        slot.reset()
        _Slots.release(slot)


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


def _environment() -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", **_toolchains()}


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


# -- root containment: one worker slot per concurrently running sample ---------------------------------------
class _Slot:
    """A mount namespace prepared once (held by a waiting shell) that each sample of this slot starts from.

    Preparing it costs a dozen `mount` calls; a sample then only pays for entering it (`nsenter`) and for its
    own pid/ipc/network/mount namespaces (`unshare`), so the per-sample overhead stays a few milliseconds.
    """

    def __init__(self, number: int, lock: int) -> None:
        self.number, self.lock, self.uid = number, lock, UID_BASE + number
        self.holder = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", _setup_script()],
            stdin=subprocess.PIPE,  # the holder waits on it: it exits (and its namespace goes) with us
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        if self.holder.stdout.readline().strip() != b"ready":
            self.holder.kill()
            _, err = self.holder.communicate()
            raise OSError(err.decode("utf-8", "replace").strip() or "the sandbox setup failed")
        self.root = Path(f"/proc/{self.holder.pid}/root")

    def command(self, argv: list[str], limits: Limits) -> list[str]:
        namespaces = ["--pid", "--ipc", "--fork", "--kill-child", "--mount-proc", f"--wd={SAMPLE_DIR}"]
        if not limits.network:
            namespaces.insert(0, "--net")
        user = [f"--reuid={self.uid}", f"--regid={self.uid}", "--clear-groups", "--inh-caps=-all"]
        return [
            *["nsenter", f"--target={self.holder.pid}", "--mount", "--"],
            *["unshare", *namespaces, "--"],
            *_prlimit(limits),
            *["setpriv", *user, "--no-new-privs", "--"],
            *_SHELL,
            *argv,
        ]

    def reset(self) -> None:
        """Empty the slot's /tmp, /var/tmp and /dev/shm (entries are removed, never followed)."""
        for folder in ("tmp", "var/tmp", "dev/shm"):
            with contextlib.suppress(FileNotFoundError):
                for entry in os.scandir(self.root / folder):
                    if entry.is_dir(follow_symlinks=False):
                        shutil.rmtree(entry.path, ignore_errors=True)
                    else:
                        with contextlib.suppress(OSError):
                            os.unlink(entry.path)

    def kill_all(self) -> None:
        """SIGKILL whatever still runs as this slot's uid (after a timeout the pid namespace dies
        asynchronously) and wait until nothing does, so the next sample starts clean."""
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            alive = []
            for name in os.listdir("/proc"):
                with contextlib.suppress(OSError):
                    if name.isdigit() and os.stat(f"/proc/{name}").st_uid == self.uid:
                        os.kill(int(name), signal.SIGKILL)
                        alive.append(name)
            if not alive:
                return
            time.sleep(0.01)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.holder.stdin.close()
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            self.holder.wait(timeout=5)
        os.close(self.lock)


class _Slots:
    """Slots are numbered from 0; a slot is held through a lock file, so that two harnesses running at once
    (and threads of one) never share a uid, and each sample's process limit counts only its own processes."""

    _lock = threading.Lock()
    _free: list[_Slot] = []
    _all: list[_Slot] = []

    @classmethod
    def acquire(cls) -> _Slot:
        with cls._lock:
            if cls._free:
                return cls._free.pop()
            folder = Path(tempfile.gettempdir()) / "replitlm-sandbox-slots"
            folder.mkdir(mode=0o700, exist_ok=True)
            taken = {slot.number for slot in cls._all}
            for number in range(10_000):
                if number in taken:
                    continue
                lock = os.open(folder / f"{number}.lock", os.O_RDWR | os.O_CREAT, 0o600)
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(lock)
                    continue
                try:
                    slot = _Slot(number, lock)
                except BaseException:
                    os.close(lock)
                    raise
                if not cls._all:
                    atexit.register(cls.close_all)
                cls._all.append(slot)
                return slot
            raise OSError("no free sandbox slot")

    @classmethod
    def release(cls, slot: _Slot) -> None:
        with cls._lock:
            cls._free.append(slot)

    @classmethod
    def close_all(cls) -> None:
        with cls._lock:
            for slot in cls._all:
                slot.close()
            cls._all.clear()
            cls._free.clear()


def _base_python() -> Path:
    return Path(os.path.realpath(getattr(sys, "_base_executable", sys.executable)))


@functools.cache
def _setup_script() -> str:
    """The shell script that prepares a slot's mount namespace (run as root inside `unshare --mount`)."""
    home = Path.home().resolve()
    needed = [Path(os.path.realpath(sys.base_prefix))]
    needed += [Path(os.path.realpath(v)) for v in _toolchains().values() if Path(v).is_dir()]
    # Folders others cannot enter (root's home, mode 0700) are replaced by an empty tmpfs; what the samples
    # need from inside them is bind-mounted back, read-only, at its own path.
    shadowed = {home}
    for path in needed:
        for ancestor in reversed(path.parents):
            if ancestor != Path("/") and not os.stat(ancestor).st_mode & 0o001:
                shadowed.add(ancestor)
                break
    shadowed = {s for s in shadowed if not any(other in s.parents for other in shadowed)}
    binds = [p for p in dict.fromkeys(needed) if any(s == p or s in p.parents for s in shadowed)]
    # The harness's own checkout and virtualenv are hidden too (unless a toolchain lives there).
    repo = Path(__file__).resolve().parents[2]
    hidden = {repo, Path(os.path.realpath(sys.prefix))}
    hidden = {
        h
        for h in hidden
        if h.is_dir()
        and h != Path("/")
        and not any(h == p or h in p.parents for p in needed)
        and not any(other in h.parents for other in hidden | shadowed)
    }
    q = shlex.quote
    lines = ["set -e", "mount -t tmpfs -o size=1m,mode=700 tmpfs /tmp"]
    for i, path in enumerate(binds):
        lines += [f"mkdir /tmp/{i}", f"mount --bind {q(str(path))} /tmp/{i}"]
    for folder in sorted(shadowed):
        lines.append(f"mount -t tmpfs -o size=1m,mode=755 tmpfs {q(str(folder))}")
    for i, path in enumerate(binds):
        lines += [
            f"mkdir -p {q(str(path))}",
            f"mount --move /tmp/{i} {q(str(path))}",
            f"mount -o remount,bind,ro {q(str(path))}",
        ]
    for folder in sorted(shadowed):
        lines.append(f"mount -o remount,bind,ro {q(str(folder))}")
    lines.append("umount /tmp")
    for folder in sorted(hidden):
        lines.append(f"mount -t tmpfs -o size=4k,mode=755,ro tmpfs {q(str(folder))}")
    # Read-only everywhere (a per-mount flag of this namespace: the host's filesystem is not touched) but
    # for the sample's private scratch space.
    lines.append("mount -o remount,bind,ro /")
    for folder, size in (("/tmp", 1024), ("/var/tmp", 64), ("/dev/shm", 64)):
        lines.append(
            f"if [ -d {folder} ]; then mount -t tmpfs -o size={size}m,mode=1777,nosuid,nodev tmpfs {folder}; fi"
        )
    lines += ["echo ready", "read _ || true"]
    return "\n".join(lines) + "\n"


# RLIMIT_CPU sends SIGXCPU at the soft limit and SIGKILL at the hard one; through the shell in between,
# a death by signal n reads as exit status 128 + n.
_CPU_LIMIT_CODES = frozenset(code for n in (signal.SIGXCPU, signal.SIGKILL) for code in (-n, 128 + n))


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # already gone
        os.killpg(pgid, signal.SIGKILL)


def _last_line(output: bytes) -> str:
    # Python 3.11's tracebacks underline the failing expression: those lines say nothing on their own.
    text = output.decode("utf-8", "replace")
    lines = [line for line in text.splitlines() if line.strip() and line.strip(" ^~")]
    return lines[-1][:500] if lines else ""


def python_command() -> list[str]:
    """A Python interpreter in isolated mode (no user site, no PYTHON* variables, no cwd on sys.path) without
    the site module: samples get the standard library only, and start ~3x faster. In the root containment
    it is the base interpreter (the harness's virtualenv is hidden there), through its own path."""
    python = _base_python() if containment().mode == "root" else Path(sys.executable)
    return [str(python), "-I", "-S", "-B"]
