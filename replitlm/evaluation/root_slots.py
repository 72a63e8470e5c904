"""The root containment: one worker slot per concurrently running sample, each a mount namespace prepared
once and held by a fork server (slot_fork_server.py) that starts every sample as the slot's unprivileged uid
in fresh pid, ipc and mount namespaces (see sandbox.py for the whole picture)."""

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
from pathlib import Path

from replitlm.evaluation.execution import (
    PYTHON_FLAGS,
    Limits,
    Outcome,
    base_python,
    environment,
    kill_group,
    outcome,
    toolchains,
)

UID_BASE = 60000  # worker slot n runs its samples as uid/gid UID_BASE + n (root containment)


SAMPLE_DIR = "/tmp/sample"  # the sample's folder inside the root containment


def run_contained(argv: list[str], files: dict[str, str], limits: Limits, expect: str | None) -> Outcome:
    start = time.perf_counter()
    try:
        slot = Slots.acquire()
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
        env = {"HOME": SAMPLE_DIR, "TMPDIR": "/tmp", **environment()}
        outcome = slot.execute(argv, env, limits, expect, start)
        healthy = True
        return outcome
    except OSError as exc:
        return Outcome("error", f"sandbox slot {slot.number}: {exc}", time.perf_counter() - start)
    finally:
        slot.reset()
        Slots.release(slot, healthy)


class Slot:
    """A mount namespace prepared once, held by a fork server (`slot_fork_server.py`, as root) that starts each
    sample of this slot: it forks, unshares the sample's own pid/ipc/network/mount namespaces, drops to the
    slot's uid and execs the program (or runs a Python script in that fresh fork). No mounts and no
    helper programs per sample: the per-sample overhead is a few forks and the namespaces themselves."""

    def __init__(self, number: int, lock: int) -> None:
        self.number, self.lock, self.uid = number, lock, UID_BASE + number
        self.sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        server = (Path(__file__).parent / "slot_fork_server.py").read_text()
        python = [str(base_python()), *PYTHON_FLAGS]
        script = setup_script() + f'exec {" ".join(map(shlex.quote, python))} -c "$1" "$2" "$3"\n'
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
                env=environment(),
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
            out, err, done = read_until(out_r, err_r, deadline)
            reply = self._reply(deadline - time.perf_counter()) if done else None
            if reply is None:  # the wall clock ran out: kill its process group (and so its pid namespace)
                kill_group(pid)
                if self._reply(10.0) is None:
                    raise OSError("its server did not see the killed sample end")
                self.kill_all()
                return Outcome("timeout", f"timed out after {limits.wall_s:g} s", time.perf_counter() - start)
        finally:
            os.close(out_r)
            os.close(err_r)
        return outcome(reply["status"], out, err, limits, expect, time.perf_counter() - start)

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


def read_until(out_fd: int, err_fd: int, deadline: float) -> tuple[bytes, bytes, bool]:
    """Read both pipes to their end, or until the deadline: (stdout, stderr, whether both ended). Only the
    last KEEP bytes of each are kept (the end token and the error are last): a sample printing gigabytes
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
                if len(buffer) > 2 * KEEP:
                    del buffer[:-KEEP]
        done = not selector.get_map()
    return bytes(kept[out_fd]), bytes(kept[err_fd]), done


KEEP = 1 << 20


class Slots:
    """Slots are numbered from 0; a slot is held through a lock file, so that two harnesses running at once
    (and threads of one) never share a uid, and each sample's process limit counts only its own processes."""

    _lock = threading.Lock()
    _free: list[Slot] = []
    _all: list[Slot] = []

    @classmethod
    def acquire(cls) -> Slot:
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
                    slot = Slot(number, lock)
                except BaseException:
                    os.close(lock)
                    raise
                if not cls._all:
                    atexit.register(cls.close_all)
                cls._all.append(slot)
                return slot
            raise OSError("no free sandbox slot")

    @classmethod
    def release(cls, slot: Slot, healthy: bool = True) -> None:
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


@functools.cache
def setup_script() -> str:
    """The shell script that prepares a slot's mount namespace (run as root inside `unshare --mount`)."""
    home = Path.home().resolve()
    needed = [Path(os.path.realpath(sys.base_prefix))]
    needed += [Path(os.path.realpath(v)) for v in toolchains().values() if Path(v).is_dir()]
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
