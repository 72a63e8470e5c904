"""Multi-node training for real on one machine: two hosts in network namespaces, joined by a veth pair.

Each host runs the shipped scripts/launch/multinode.sh (one Composer launcher, one process, world size 2)
inside its own network namespace, with its own /dev/shm and /tmp (streaming keys its shared memory and file
locks by the dataset's local path; two launchers sharing them would think they are one node). The data and
the save_folder are shared, as on a cluster with shared storage; each host reads the data through `remote`
into a `local` cache of its own, as the README says (hosts sharing one `local` folder of compressed shards
decompress into the same files and race). Training runs DDP over gloo on the veth.

- the two hosts train to the end, and each host writes the summary of the same run;
- host 1 SIGKILLed mid-training: host 0 stops within a bounded time with the lost-peer message, and
  relaunching both resumes from the last checkpoint and ends with the weights of the uninterrupted run;
- the link between the hosts cut mid-training (no FIN/RST reaches either side, as when a node loses power
  or its network): both hosts stop within dist_timeout + a margin with the message.

Skipped where network namespaces cannot be made (needs root: CAP_NET_ADMIN and CAP_SYS_ADMIN).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path

import pytest
import torch

from replitlm import ReplitLMForCausalLM
from replitlm.cli.train import LOST_PEER_EXIT
from replitlm.training.multinode import lost_peer
from tests.conftest import REPO
from tests.training.conftest import TINY, tiny_overrides, write_token_shards

# Launches processes, trains, or runs the sandbox: in `make test`, not in `make test-fast`.
pytestmark = pytest.mark.integration

LAUNCH = REPO / "scripts" / "launch" / "multinode.sh"
MASTER = "10.77.0.1"  # host 0's veth address; host 1 is 10.77.0.2 (the pair is private to the namespaces)
DIST_TIMEOUT = 20  # seconds; Composer's default (600) would make a lost host cost 10 minutes
BATCHES, KILL_AT = 12, 4  # checkpoints every 2 batches; the fault comes once ba4 is on disk
STOP_BOUND = 90  # seconds from the fault until a surviving launcher has exited (observed: 10-35 s)
RUN = {
    "run_name": "two-hosts",  # autoresume finds the checkpoints by save_folder + run_name
    "autoresume": True,
    "max_duration": f"{BATCHES}ba",
    "save_interval": "2ba",
    "save_num_checkpoints_to_keep": -1,
    "dist_timeout": DIST_TIMEOUT,
}
_ports = count(29650)


def _ip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)


@dataclass
class Hosts:
    """Two network namespaces `ns[0]`, `ns[1]` with veth ends `link[0]` (10.77.0.1) and `link[1]` (.2)."""

    ns: tuple[str, str]
    link: tuple[str, str]
    root: Path  # each host's /dev/shm and /tmp
    data: Path  # the MDS shards (shared storage)
    running: list[subprocess.Popen] = field(default_factory=list)

    def launch(self, rank: int, run_dir: Path, port: int) -> subprocess.Popen:
        """Host `rank`'s launcher, in its own session (its process group is the whole host)."""
        home = self.root / f"host{rank}"
        shm, tmp = home / "shm", home / "tmp"  # kept across launches, as a real node's are (the cache too)
        shm.mkdir(parents=True, exist_ok=True)
        tmp.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",  # the venv's python
            "TMPDIR": str(tmp),
            "GLOO_SOCKET_IFNAME": self.link[rank],
            "NNODES": "2",
            "NODE_RANK": str(rank),
            "GPUS_PER_NODE": "1",
            "MASTER_ADDR": MASTER,
            "MASTER_PORT": str(port),
        }
        cache = {  # the shared shards as `remote`, this host's own decompressed copy as `local`
            f"{loader}.dataset.{key}": value
            for loader in ("train_loader", "eval_loader")
            for key, value in (("remote", self.data), ("local", home / "mds-cache"))
        }
        args = tiny_overrides(self.data, run_dir, **RUN, **cache)
        # `ip netns exec` gives the command a mount namespace of its own: the bind mount stays in it
        shell = 'mount --bind "$1" /dev/shm && shift && exec "$@"'
        netns = ["ip", "netns", "exec", self.ns[rank], "sh", "-c", shell, "sh", str(shm)]
        cmd = [*netns, str(LAUNCH), str(TINY)]
        log = open(run_dir / f"host{rank}.log", "a")  # noqa: SIM115 (the child writes it; closed with it)
        proc = subprocess.Popen(
            cmd + args, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        self.running.append(proc)
        return proc

    def kill(self, proc: subprocess.Popen) -> None:
        with contextlib.suppress(ProcessLookupError):  # already gone
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    def set_link(self, rank: int, state: str) -> None:
        done = _ip("-n", self.ns[rank], "link", "set", "dev", self.link[rank], state)
        assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module")
def hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hosts]:
    if shutil.which("ip") is None:
        pytest.skip("needs iproute2's `ip` to make network namespaces")
    tag = f"rlm{os.getpid() % 100000}"  # unique per test session; interface names stay under 15 characters
    ns, link = (f"{tag}n0", f"{tag}n1"), (f"{tag}v0", f"{tag}v1")
    made = _ip("netns", "add", ns[0])
    if made.returncode != 0:
        pytest.skip(f"network namespaces are not permitted here (`ip netns add`: {made.stderr.strip()})")
    root = tmp_path_factory.mktemp("two-hosts")
    hosts = Hosts(ns, link, root / "hosts", root / "mds")
    try:
        steps = [
            ("netns", "add", ns[1]),
            ("link", "add", link[0], "type", "veth", "peer", "name", link[1]),
            ("link", "set", link[0], "netns", ns[0]),
            ("link", "set", link[1], "netns", ns[1]),
            ("-n", ns[0], "addr", "add", f"{MASTER}/24", "dev", link[0]),
            ("-n", ns[1], "addr", "add", "10.77.0.2/24", "dev", link[1]),
        ]
        steps += [("-n", ns[r], "link", "set", "dev", dev, "up") for r in (0, 1) for dev in ("lo", link[r])]
        for step in steps:
            done = _ip(*step)
            assert done.returncode == 0, f"ip {' '.join(step)}: {done.stderr}"
        (root / "probe").mkdir()
        probe = ["ip", "netns", "exec", ns[0], "mount", "--bind", str(root / "probe"), "/dev/shm"]
        done = subprocess.run(probe, capture_output=True, text=True, timeout=30)
        if done.returncode != 0:
            pytest.skip(f"cannot give a namespace its own /dev/shm (mount --bind: {done.stderr.strip()})")
        write_token_shards(root / "mds" / "train", 96, 32, seed=0, sequence_id=True)
        write_token_shards(root / "mds" / "val", 16, 32, seed=1, sequence_id=True)
        yield hosts
    finally:
        for proc in hosts.running:
            if proc.poll() is None:
                hosts.kill(proc)
        for name in ns:
            _ip("netns", "del", name)  # deleting a namespace deletes its veth end, and so the pair


def _logs(run_dir: Path) -> str:
    return "\n".join(
        f"---- {p.name} (last 4000 chars) ----\n{p.read_text()[-4000:]}"
        for p in sorted(run_dir.glob("*.log"))
    )


def _wait(procs: list[subprocess.Popen], run_dir: Path, seconds: float) -> list[int]:
    """Every launcher's exit status, waiting at most `seconds`, and at most STOP_BOUND once one has failed
    (the others must then stop on their own: a test that waited out the full time hid that for minutes)."""
    deadline = time.monotonic() + seconds
    while any(proc.poll() is None for proc in procs):
        if any(proc.poll() not in (None, 0) for proc in procs):
            deadline = min(deadline, time.monotonic() + STOP_BOUND)
        if time.monotonic() > deadline:
            codes = [proc.poll() for proc in procs]
            pytest.fail(f"a host still runs (exit codes so far {codes})\n{_logs(run_dir)}")
        time.sleep(0.2)
    return [proc.returncode for proc in procs]


def _train(hosts: Hosts, run_dir: Path) -> str:
    """Both hosts to the end; host 0's output."""
    port = next(_ports)
    procs = [hosts.launch(0, run_dir, port), hosts.launch(1, run_dir, port)]
    codes = _wait(procs, run_dir, 480)
    assert codes == [0, 0], _logs(run_dir)
    return (run_dir / "host0.log").read_text()


def _start_and_fault(hosts: Hosts, run_dir: Path) -> list[subprocess.Popen]:
    """Both hosts, once the checkpoint of batch KILL_AT is complete (the fault is the caller's).

    Composer writes the file, then points latest-rank0.pt at it: autoresume reads the link, so a checkpoint
    counts once the link names it.
    """
    port = next(_ports)
    procs = [hosts.launch(0, run_dir, port), hosts.launch(1, run_dir, port)]
    deadline = time.monotonic() + 420
    while _last_checkpoint(run_dir) < KILL_AT:
        if any(p.poll() is not None for p in procs) or time.monotonic() > deadline:
            pytest.fail(f"no checkpoint of batch {KILL_AT} while both hosts ran\n{_logs(run_dir)}")
        time.sleep(0.05)
    return procs


def _last_checkpoint(run_dir: Path) -> int:
    """The batch of the checkpoint that autoresume would load (0: none yet)."""
    latest = run_dir / "checkpoints" / "latest-rank0.pt"
    if not latest.is_symlink():
        return 0
    return int(re.fullmatch(r"ep\d+-ba(\d+)-rank0\.pt", Path(os.readlink(latest)).name).group(1))


def _same_weights(a: Path, b: Path) -> None:
    ours, ref = (ReplitLMForCausalLM.from_pretrained(p).state_dict() for p in (a, b))
    for name, tensor in ref.items():
        torch.testing.assert_close(ours[name], tensor, rtol=0, atol=0, msg=name)


@pytest.fixture(scope="module")
def uninterrupted(hosts: Hosts, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    run_dir = tmp_path_factory.mktemp("uninterrupted")
    return run_dir, _train(hosts, run_dir)


@pytest.mark.slow
def test_two_hosts_train_to_the_end(uninterrupted: tuple[Path, str]) -> None:
    run_dir, out = uninterrupted
    assert "node 0 of 2: 1 processes, world size 2, master 10.77.0.1" in out
    assert f"at batch {BATCHES} " in out and "resumed at batch" not in out
    assert "node 1 of 2" in (run_dir / "host1.log").read_text()
    assert _last_checkpoint(run_dir) == BATCHES
    assert (run_dir / "hf" / "config.json").is_file()


@pytest.mark.slow
def test_killed_host_stops_the_other_and_relaunch_resumes(
    hosts: Hosts, uninterrupted: tuple[Path, str], tmp_path: Path
) -> None:
    host0, host1 = _start_and_fault(hosts, tmp_path)
    hosts.kill(host1)  # SIGKILL to host 1's launcher and its training process
    killed = time.monotonic()
    (code,) = _wait([host0], tmp_path, STOP_BOUND)
    stopped = time.monotonic() - killed
    out = (tmp_path / "host0.log").read_text()
    assert code == LOST_PEER_EXIT, _logs(tmp_path)
    assert "error: lost contact with another process of the distributed run" in out, out[-4000:]
    assert "rank 0 of 2 (node 0) stops here" in out and "autoresume continues from the last checkpoint" in out
    print(f"host 0 exited {stopped:.1f} s after host 1 was killed")
    resume_from = _last_checkpoint(tmp_path)
    assert KILL_AT <= resume_from < BATCHES, "the fault came too late to test a resumption"

    out = _train(hosts, tmp_path)  # the same command on both hosts
    assert f"at batch {BATCHES} " in out and f"resumed at batch {resume_from}," in out, out[-4000:]
    assert _last_checkpoint(tmp_path) == BATCHES
    _same_weights(tmp_path / "hf", uninterrupted[0] / "hf")  # gloo over the veth is deterministic


@pytest.mark.slow
def test_cut_link_stops_both_hosts_within_dist_timeout(hosts: Hosts, tmp_path: Path) -> None:
    procs = _start_and_fault(hosts, tmp_path)
    hosts.set_link(1, "down")  # nothing more reaches either side: no FIN or RST, only timeouts
    try:
        cut = time.monotonic()
        codes = _wait(procs, tmp_path, DIST_TIMEOUT + STOP_BOUND)
        stopped = time.monotonic() - cut
    finally:
        hosts.set_link(1, "up")
    assert codes == [LOST_PEER_EXIT, LOST_PEER_EXIT], _logs(tmp_path)
    for rank in (0, 1):
        out = (tmp_path / f"host{rank}.log").read_text()
        assert "error: lost contact with another process of the distributed run" in out, out[-4000:]
        assert f"rank {rank} of 2 (node {rank}) stops here" in out
    print(f"both hosts exited within {stopped:.1f} s of the cut (dist_timeout {DIST_TIMEOUT} s)")


def test_lost_peer_is_told_apart_from_other_errors() -> None:
    import torch.distributed as torch_dist

    gloo = "[/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:534] Connection closed by peer [10.77.0.2]:13037"
    timeout = (
        "[gloo/transport/tcp/unbound_buffer.cc:81] Timed out waiting 20000ms for recv operation to complete"
    )
    assert lost_peer(RuntimeError(gloo)) and lost_peer(RuntimeError(timeout))
    assert lost_peer(torch_dist.DistNetworkError("failed to recv, got 0 bytes"))
    try:  # a later error raised while handling the gloo one (as Trainer.close()'s barrier used to)
        try:
            raise RuntimeError(gloo)
        except RuntimeError:
            raise ValueError("something else") from None
    except ValueError as exc:
        assert not lost_peer(exc)  # `from None`: no chain
    wrapped = ValueError("wrapped")
    wrapped.__cause__ = RuntimeError(timeout)
    assert lost_peer(wrapped)
    assert not lost_peer(RuntimeError("CUDA out of memory")) and not lost_peer(
        ValueError("Timed out waiting")
    )
