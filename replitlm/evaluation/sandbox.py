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

import atexit
import contextlib
import fcntl
import functools
import json
import os
import selectors
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

UID_BASE = 60000  # worker slot n runs its samples as uid/gid UID_BASE + n (root containment)
SAMPLE_DIR = "/tmp/sample"  # the sample's folder inside the root containment
_PYTHON_FLAGS = ["-I", "-S", "-B"]  # isolated, no site (standard library only), no .pyc writing


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
    healthy = False  # until the exchange with the slot's server completed (an exception leaves it unknown)
    try:
        workdir = slot.root / SAMPLE_DIR.lstrip("/")  # the slot's /tmp/sample, seen from here
        workdir.mkdir()
        os.chown(workdir, slot.uid, slot.uid)
        for name, text in files.items():
            (workdir / name).write_text(text)
            os.chown(workdir / name, slot.uid, slot.uid)
        env = {"HOME": SAMPLE_DIR, "TMPDIR": "/tmp", **_environment()}
        outcome = slot.execute(argv, env, limits, expect, start)
        healthy = True
        return outcome
    except OSError as exc:
        return Outcome("error", f"sandbox slot {slot.number}: {exc}", time.perf_counter() - start)
    finally:
        slot.reset()
        _Slots.release(slot, healthy)


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
    return _outcome(proc.returncode, out, err, limits, expect, time.perf_counter() - start)


def _outcome(
    code: int, out: bytes, err: bytes, limits: Limits, expect: str | None, seconds: float
) -> Outcome:
    if code == 0 and (expect is None or expect.encode() in out):
        return Outcome("passed", "passed", seconds)
    if code == 0:
        return Outcome("failed", "exited before the tests finished", seconds)
    if code in _CPU_LIMIT_CODES and seconds >= limits.cpu_s:
        return Outcome("timeout", f"CPU limit of {limits.cpu_s} s", seconds)
    return Outcome("failed", _last_line(err or out) or f"exit code {code}", seconds)


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
    """A mount namespace prepared once, held by a fork server (`slot_fork_server.py`, as root) that starts each
    sample of this slot: it forks, unshares the sample's own pid/ipc/network/mount namespaces, drops to the
    slot's uid and execs the program (or runs a Python script in that fresh fork). No mounts and no
    helper programs per sample: the per-sample overhead is a few forks and the namespaces themselves."""

    def __init__(self, number: int, lock: int) -> None:
        self.number, self.lock, self.uid = number, lock, UID_BASE + number
        self.sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        server = (Path(__file__).parent / "slot_fork_server.py").read_text()
        python = [str(_base_python()), *_PYTHON_FLAGS]
        script = _setup_script() + f'exec {" ".join(map(shlex.quote, python))} -c "$1" "$2" "$3"\n'
        # The slot's own network namespace (no interface up) is shared by its samples, one after another:
        # making one per sample costs more than the rest of the sandbox. The server keeps the host's for
        # samples whose limits allow the network.
        host_network = os.open("/proc/self/ns/net", os.O_RDONLY)
        try:
            self.holder = subprocess.Popen(
                [
                    *["unshare", "--mount", "--net", "--propagation", "private"],
                    *["sh", "-c", script, "sh", server, str(theirs.fileno()), str(host_network)],
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                pass_fds=[theirs.fileno(), host_network],
                # A sample forked from the server could read the server's initial environment in
                # /proc/self/environ: it gets only what samples get anyway, not the harness's.
                env=_environment(),
                start_new_session=True,
            )
        except OSError:
            self.sock.close()
            raise
        finally:
            theirs.close()
            os.close(host_network)
        if self.holder.stdout.readline().strip() != b"ready":
            self.holder.kill()
            _, err = self.holder.communicate()
            self.sock.close()
            raise OSError(err.decode("utf-8", "replace").strip() or "the sandbox setup failed")
        self.root = Path(f"/proc/{self.holder.pid}/root")

    def execute(
        self, argv: list[str], env: dict[str, str], limits: Limits, expect: str | None, start: float
    ) -> Outcome:
        mb = 1024 * 1024
        request = {
            "argv": argv,
            "env": env,
            "cwd": SAMPLE_DIR,
            "uid": self.uid,
            "network": limits.network,
            "rlimits": {
                "RLIMIT_CPU": limits.cpu_s,
                "RLIMIT_AS": limits.memory_mb * mb,
                "RLIMIT_FSIZE": limits.file_mb * mb,
                "RLIMIT_NPROC": limits.processes,
                "RLIMIT_NOFILE": limits.open_files,
            },
        }
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        try:
            try:
                socket.send_fds(self.sock, [json.dumps(request).encode()], [out_w, err_w])
            finally:
                os.close(out_w)
                os.close(err_w)
            pid = self._reply(None)["pid"]
            deadline = start + limits.wall_s
            out, err, done = _read_until(out_r, err_r, deadline)
            reply = self._reply(deadline - time.perf_counter()) if done else None
            if reply is None:  # the wall clock ran out: kill its process group (and so its pid namespace)
                _kill_group(pid)
                if self._reply(10.0) is None:
                    raise OSError("its server did not see the killed sample end")
                self.kill_all()
                return Outcome("timeout", f"timed out after {limits.wall_s:g} s", time.perf_counter() - start)
        finally:
            os.close(out_r)
            os.close(err_r)
        return _outcome(reply["status"], out, err, limits, expect, time.perf_counter() - start)

    def _reply(self, timeout: float | None) -> dict | None:
        """The server's next answer; None if `timeout` seconds pass first."""
        if timeout is not None and timeout <= 0:
            return None
        self.sock.settimeout(timeout)
        try:
            message = self.sock.recv(4096)
        except TimeoutError:
            return None
        if not message:
            raise OSError(f"the sandbox server of slot {self.number} has gone")
        return json.loads(message)

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
        self.sock.close()  # the server reads an empty message and ends; the namespace goes with it
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            self.holder.wait(timeout=5)
        os.close(self.lock)


def _read_until(out_fd: int, err_fd: int, deadline: float) -> tuple[bytes, bytes, bool]:
    """Read both pipes to their end, or until the deadline: (stdout, stderr, whether both ended). Only the
    last _KEEP bytes of each are kept (the end token and the error are last): a sample printing gigabytes
    costs the harness no memory."""
    kept = {out_fd: bytearray(), err_fd: bytearray()}
    with selectors.DefaultSelector() as selector:
        for fd in kept:
            selector.register(fd, selectors.EVENT_READ)
        while selector.get_map():
            left = deadline - time.perf_counter()
            if left <= 0:
                break
            for key, _ in selector.select(left):
                data = os.read(key.fd, 65536)
                if not data:
                    selector.unregister(key.fd)
                    continue
                buffer = kept[key.fd]
                buffer += data
                if len(buffer) > 2 * _KEEP:
                    del buffer[:-_KEEP]
        done = not selector.get_map()
    return bytes(kept[out_fd]), bytes(kept[err_fd]), done


_KEEP = 1 << 20


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
    def release(cls, slot: _Slot, healthy: bool = True) -> None:
        with cls._lock:
            if healthy:
                cls._free.append(slot)
            else:  # its server is gone or stuck: the next sample starts a new one under the same number
                slot.close()
                cls._all.remove(slot)

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
    return [str(python), *_PYTHON_FLAGS]
