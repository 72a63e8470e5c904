"""The pipeline's worker processes: results in input order, errors and dead workers reported, no leftovers."""

from __future__ import annotations

import io
import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tqdm import tqdm

from replitlm.data.encoding import TokenEncoder
from replitlm.data.pipeline import PipelineConfig, init_worker
from replitlm.data.workers import ordered_map, other_threads, worker_context
from tests.conftest import REPO

PRELOAD = ["replitlm.data.pipeline"]  # what the fork server imports: the pipeline's worker initializer

# Launches processes, trains, or runs the sandbox: in `make test`, not in `make test-fast`.
pytestmark = pytest.mark.integration


@pytest.fixture
def initargs(tmp_path: Path, spiece_path: Path) -> tuple:
    config = PipelineConfig(inputs=["x"], out=str(tmp_path / "out"), tokenizer=str(spiece_path))
    return config, TokenEncoder(str(spiece_path)), None


@pytest.mark.parametrize(("workers", "method"), [(1, "fork"), (3, "fork"), (2, "forkserver")])
def test_results_come_back_in_input_order(initargs: tuple, workers: int, method: str) -> None:
    batches = [-k for k in range(1, 40)]
    ctx = multiprocessing.get_context(method)
    assert list(ordered_map(abs, iter(batches), workers, init_worker, initargs, ctx)) == list(range(1, 40))
    assert not multiprocessing.active_children()  # every worker has exited


def _slow_first_int(task: tuple[int, str]) -> int:
    if task[0] == 0:
        time.sleep(0.5)  # the other worker's error arrives first
    return int(task[1])


def test_a_worker_error_keeps_its_type_traceback_and_place(initargs: tuple) -> None:
    """The error comes when its batch's turn comes: results of the batches before it are not lost."""
    tasks = iter(enumerate(["1", "2", "three", "4"]))
    results = ordered_map(_slow_first_int, tasks, 2, init_worker, initargs, worker_context(PRELOAD))
    assert next(results) == 1 and next(results) == 2
    with pytest.raises(ValueError, match="three") as raised:
        next(results)
    assert "in a data-preparation worker" in str(raised.value.__cause__)
    assert "invalid literal" in str(raised.value.__cause__)
    assert not multiprocessing.active_children()


def test_a_dead_worker_is_reported(initargs: tuple) -> None:
    results = ordered_map(os._exit, iter([3, 0, 0]), 1, init_worker, initargs, worker_context(PRELOAD))
    with pytest.raises(RuntimeError, match=r"worker died \(exit code 3"):
        list(results)


def test_the_progress_bar_monitor_does_not_count_as_a_thread() -> None:
    with tqdm(total=1, file=io.StringIO()) as bar:
        bar.update()
        assert not any(type(t).__name__ == "TMonitor" for t in other_threads())


def _wait_for_others(task: tuple[int, str]) -> int:
    """Batch 0 waits (up to 20 s) until five later batches are done; the others mark that they are."""
    index, folder = task
    if index > 0:
        Path(folder, str(index)).touch()
        return index
    deadline = time.monotonic() + 20
    while len(os.listdir(folder)) < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    return -len(os.listdir(folder))


def test_workers_run_ahead_of_a_slow_batch(initargs: tuple, tmp_path: Path) -> None:
    """While batch 0 is slow, the other worker goes on with later batches (bounded), and the results still
    come back in input order."""
    tasks = [(k, str(tmp_path)) for k in range(30)]
    results = list(
        ordered_map(_wait_for_others, iter(tasks), 2, init_worker, initargs, worker_context(PRELOAD))
    )
    assert results[0] <= -5, "the second worker waited for the slow batch"
    assert results[1:] == list(range(1, 30))
    assert not multiprocessing.active_children()


def _pid_after(seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()


ORPHANED_MAIN = """
import sys, threading, time
from replitlm.data.workers import ordered_map, worker_context
from tests.data.test_workers import _pid_after
if sys.argv[1] == "forkserver":  # a thread besides the main one: what sends a run to the fork server
    threading.Thread(target=time.sleep, args=(600,), daemon=True).start()
ctx = worker_context(["tests.data.test_workers"])
results = ordered_map(_pid_after, iter([0, 600, 600, 600, 600]), 2, int, (), ctx)
print(ctx.get_start_method(), next(results), flush=True)
time.sleep(600)
"""


@pytest.mark.parametrize("method", ["fork", "forkserver"])
def test_workers_exit_when_the_main_process_is_killed(method: str) -> None:
    """A main process killed outright (SIGKILL, the OOM killer) cannot stop its workers: they must notice.
    From a fork server, their parent is the server, which outlives the main process as long as they do (each
    of its children holds the pipe whose closing tells it to exit): the parent pid alone never changes."""
    main = subprocess.Popen(
        [sys.executable, "-c", ORPHANED_MAIN, method], stdout=subprocess.PIPE, text=True, cwd=REPO
    )
    try:
        started, _ = main.stdout.readline().split()
        assert started == method
        left = descendants(main.pid)  # the workers (and the fork server and its resource tracker)
        assert len(left) >= 2, left
    finally:
        main.kill()
        main.wait()
    deadline = time.monotonic() + 15
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = [p for p in left if _running(p)]
    assert not left, f"{left} outlived their killed main process ({method})"


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False
