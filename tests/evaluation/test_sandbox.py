"""The sandbox survives what untrusted samples do: loops, memory hogs, huge files, forks, the network."""

from __future__ import annotations

import os
import secrets
import tempfile
import time
from pathlib import Path

import pytest

from replitlm.evaluation.sandbox import (
    Limits,
    containment,
    network_isolation,
    python_command,
    run_program,
)

# Launches processes, trains, or runs the sandbox: in `make test`, not in `make test-fast`.
pytestmark = pytest.mark.integration

FAST = Limits(wall_s=5, cpu_s=3, memory_mb=512, file_mb=1)
REPO = Path(__file__).resolve().parents[2]
# As root the harness confines samples with an unprivileged uid and namespaces; these tests check it.
ROOT = pytest.mark.skipif(
    containment().mode != "root", reason=f"no root containment here: {containment().description}"
)


def run(source: str, limits: Limits = FAST):
    return run_program([*python_command(), "main.py"], {"main.py": source}, limits)


def test_pass_fail_and_the_failure_message() -> None:
    assert run("assert 1 + 1 == 2").status == "passed"
    failed = run("raise ValueError('nope')")
    assert failed.status == "failed" and failed.message == "ValueError: nope"


def test_infinite_loops_time_out_and_their_children_die() -> None:
    start = time.perf_counter()
    outcome = run(
        "import subprocess, sys\nsubprocess.Popen([sys.executable, '-c', 'while True: pass'])\nwhile True: pass"
    )
    assert outcome.status == "timeout" and time.perf_counter() - start < 10
    sleeping = run("import time\ntime.sleep(60)", Limits(wall_s=1))
    assert sleeping.status == "timeout" and sleeping.seconds < 5


def test_memory_and_file_size_limits() -> None:
    assert run("x = bytearray(2 * 1024**3)").status == "failed"  # MemoryError under the 512 MB limit
    assert run("open('big', 'wb').write(b'x' * 5 * 1024**2)").status == "failed"  # 1 MB file limit


def test_stdin_is_closed_and_the_folder_is_fresh_and_private() -> None:
    assert run("import sys\nassert sys.stdin.read() == ''").status == "passed"
    assert run("import os\nassert os.listdir('.') == ['main.py']").status == "passed"
    assert run("import os\nassert 'PYTHONPATH' not in os.environ").status == "passed"


@pytest.mark.skipif(not network_isolation(), reason="this OS permits no network namespace here")
def test_no_network() -> None:
    import socket

    # A server on the host's loopback: a sample that shared the host's network would reach it; an isolated
    # one cannot, whether its own loopback is down (unreachable) or up with nothing listening (refused).
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        source = f"import socket\ns = socket.socket()\ns.settimeout(2)\ns.connect(('127.0.0.1', {port}))"
        outcome = run(source)
        assert outcome.status == "failed", "the sample reached a server on the host's loopback"
        assert "unreachable" in outcome.message or "refused" in outcome.message, outcome.message
        with socket.create_connection(("127.0.0.1", port), timeout=2):  # the server was there to reach
            pass
    assert (
        run("import socket\nassert [i for i in socket.if_nameindex() if i[1] != 'lo'] == []").status
        == "passed"
    )


@pytest.mark.parametrize(
    "body",
    [
        "    import os; os.kill(os.getppid(), 9)",  # kills its parent: a shell, not the harness
        "    import os\n    while True: os.fork()",  # fork bomb
        "    import os\n    while True: os.write(1, b'x' * 65536)",  # endless output
        "    import sys; sys.exit(0)",  # exits 'successfully' before the asserts
        "    import os; os._exit(0)",
        "    x = bytearray(10 * 1024**3)",  # 10 GB
        "    import socket; socket.create_connection(('1.1.1.1', 80), timeout=2)",
        "    while True: pass",
    ],
)
def test_hostile_completions_are_failures_and_the_run_goes_on(body: str) -> None:
    from replitlm.evaluation.score import execute
    from replitlm.evaluation.tasks import humaneval

    task = humaneval()
    task.limits = Limits(wall_s=5, cpu_s=3, memory_mb=1024)
    problem = task.problems[0]
    outcomes = execute(
        task,
        [
            {"task_id": problem.task_id, "completion": body + "\n"},
            {"task_id": problem.task_id, "completion": problem.canonical_solution},
        ],
        progress=False,
    )
    assert not outcomes[0].passed and outcomes[1].passed


def test_deleting_home_only_deletes_the_samples_own_folder(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    planted = tmp_path / "keep.txt"
    planted.write_text("precious")
    outcome = run(
        "import os, shutil\nshutil.rmtree(os.path.expanduser('~'))\nassert not os.path.exists('main.py')"
    )
    assert outcome.status == "passed" and planted.read_text() == "precious"


def test_the_containment_in_effect_is_reported() -> None:
    mode = containment().mode
    assert mode in ("root", "network", "none") and containment().description
    if os.geteuid() == 0 and network_isolation():  # namespaces work here: as root, the uid drop must too
        assert mode == "root"


@pytest.mark.skipif(
    os.geteuid() == 0 and containment().mode != "root", reason="root without containment: no process limit"
)
def test_a_fork_bomb_is_stopped_by_the_process_limit_not_the_clock() -> None:
    limits = Limits(wall_s=30, cpu_s=20, memory_mb=512, processes=64)
    outcome = run("import os\nwhile True: os.fork()", limits)
    assert outcome.status == "failed" and outcome.seconds < 10, outcome


@ROOT
def test_python_runs_from_its_own_prefix_with_the_standard_library() -> None:
    source = (
        "import sys, os, json, decimal, hashlib, re, collections, math\n"
        f"assert sys.prefix == {os.path.realpath(__import__('sys').base_prefix)!r}, sys.prefix\n"
        "assert os.getuid() >= 60000 and os.getgid() >= 60000 and os.getgroups() == []\n"
        "assert os.getcwd() == os.environ['HOME'] == '/tmp/sample'\n"
    )
    assert run(source).status == "passed"


@ROOT
def test_writes_outside_the_folder_fail_and_nothing_reaches_the_host() -> None:
    name = f"replitlm-escape-{secrets.token_hex(4)}"
    targets = [
        Path("/tmp") / name,
        Path("/var/tmp") / name,
        REPO / name,
        Path.home() / name,
        Path("/") / name,
    ]
    # The sample's own /tmp and /var/tmp take writes (private scratch space); every other target fails, the
    # checkout included (under /tmp, a clone is hidden by the private /tmp: the write fails all the same).
    scratch = [str(t) for t in targets[:2]]
    source = (
        "import os\n"
        f"for path in {[str(t) for t in targets]!r}:\n"
        "    try:\n"
        "        open(path, 'w').write('escaped')\n"
        "    except OSError:\n"
        f"        assert path not in {scratch!r}, path  # its own scratch space\n"
        "    else:\n"
        f"        assert path in {scratch!r}, path\n"
    )
    try:
        assert run(source).status == "passed"
        assert [t for t in targets if t.exists()] == []
    finally:
        for target in targets:
            target.unlink(missing_ok=True)


@ROOT
def test_a_planted_file_in_the_harness_home_survives_deleting_home() -> None:
    planted = Path.home() / f".replitlm-planted-{secrets.token_hex(4)}"
    planted.write_text("precious")
    try:
        source = (
            "import os, shutil\n"
            "shutil.rmtree(os.path.expanduser('~'))\n"
            f"shutil.rmtree({str(Path.home())!r}, ignore_errors=True)\n"
            f"try:\n    os.remove({str(planted)!r})\nexcept OSError:\n    pass\n"
        )
        assert run(source).status == "passed"
        assert planted.read_text() == "precious"
    finally:
        planted.unlink(missing_ok=True)


@ROOT
def test_root_home_and_the_harness_files_are_out_of_sight() -> None:
    with tempfile.NamedTemporaryFile(prefix="replitlm-host-") as host_tmp:
        source = (
            "import os\n"
            f"assert not os.path.exists({host_tmp.name!r})  # the host's /tmp\n"
            # the harness's checkout: an empty folder, or, for a clone under /tmp, hidden by the private /tmp
            f"assert not os.path.exists({str(REPO)!r}) or os.listdir({str(REPO)!r}) == []\n"
            f"assert not os.path.exists({str(REPO / 'README.md')!r})\n"
            f"assert not os.path.exists({str(Path.home() / '.bashrc')!r})  # root's home\n"
            "assert sorted(int(p) for p in os.listdir('/proc') if p.isdigit()) == [1, 2]  # its shell, itself\n"
        )
        assert run(source).status == "passed"
    secret = Path.home() / f".replitlm-secret-{secrets.token_hex(4)}"
    secret.write_text("secret")
    try:
        assert run(f"open({str(secret)!r}).read()").status == "failed"
    finally:
        secret.unlink()


def test_the_harness_environment_does_not_reach_samples(monkeypatch) -> None:
    monkeypatch.setenv("REPLITLM_TEST_SECRET", "hunter2")
    from replitlm.evaluation.root_slots import Slots

    Slots.close_all()  # servers started from now on see the secret in the harness's environment
    source = (
        "import os\nassert 'REPLITLM_TEST_SECRET' not in os.environ\n"
        "assert b'hunter2' not in open('/proc/self/environ', 'rb').read()\n"
        "assert os.listdir('/proc/self/fd')\n"
    )
    assert run(source).status == "passed"


@ROOT
def test_samples_of_parallel_slots_run_as_different_uids() -> None:
    from concurrent.futures import ThreadPoolExecutor

    # Each sample holds its slot for a second and leaves its uid in its (private) /tmp; the two must differ.
    source = "import os, time\ntime.sleep(1)\nprint(os.getuid())\nraise SystemExit(os.getuid())"
    with ThreadPoolExecutor(2) as pool:
        outcomes = list(pool.map(lambda _: run(source), range(2)))
    uids = {o.message for o in outcomes}  # a failure's message is the last line of its output
    assert len(uids) == 2 and all(u.startswith("600") for u in uids), outcomes
