"""The sandbox survives what untrusted samples do: loops, memory hogs, huge files, forks, the network."""

from __future__ import annotations

import time

import pytest

from replitlm.evaluation.sandbox import Limits, network_isolation, python_command, run_program

FAST = Limits(wall_s=5, cpu_s=3, memory_mb=512, file_mb=1)


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
    source = "import socket\ns = socket.socket()\ns.settimeout(2)\ns.connect(('127.0.0.1', 22))"
    outcome = run(source)
    assert outcome.status == "failed" and ("unreachable" in outcome.message or "refused" in outcome.message)
    assert (
        run("import socket\nassert [i for i in socket.if_nameindex() if i[1] != 'lo'] == []").status
        == "passed"
    )


@pytest.mark.parametrize(
    "body",
    [
        "    import os; os.kill(os.getppid(), 9)",  # kills its parent: a shell, not the harness
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
