"""A pool of worker processes that maps a function over batches and yields the results in input order.

Written for data preparation (large batches of bytes out, large token arrays back) where
multiprocessing.Pool cost about a core-second more per 100 MB: see `ordered_map`. The output never depends
on which worker ran a batch or when.
"""

from __future__ import annotations

import collections
import multiprocessing
import multiprocessing.connection
import os
import pickle
import queue
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from typing import Any

from tqdm.std import TMonitor

IN_FLIGHT = 2  # batches per worker queued or in progress: enough to keep it busy
AHEAD = 4  # batches per worker dispatched and not yet consumed (in flight or waiting for an earlier one)


def worker_context(preload: list[str]) -> multiprocessing.context.BaseContext:
    """How worker processes start. Forking this process is the fast way (workers inherit the imported
    modules; spawning re-imports torch and transformers, ~8 s per worker), and safe while no other Python
    thread runs here. With other threads (a test runner, a notebook, an app calling `run`) a fork can copy a
    lock one of them holds and the worker waits on it forever: then workers come from a fork server that
    imported `preload` (the modules of the work function) once (a few seconds more at start-up). tqdm's monitor thread does not count: it
    sleeps, and the only lock it takes is tqdm's own, which workers never use (it outlives a progress bar by
    up to 10 s, so a second `run` right after a first would otherwise pay for the fork server)."""
    methods = multiprocessing.get_all_start_methods()
    if "fork" in methods and not other_threads():
        return multiprocessing.get_context("fork")
    if "forkserver" not in methods:
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(preload)
    return ctx


def other_threads() -> list[threading.Thread]:
    """Python threads besides the calling one, tqdm's monitor left out."""
    me = threading.current_thread()
    return [t for t in threading.enumerate() if t is not me and not isinstance(t, TMonitor)]


def ordered_map(
    fn: Callable,
    batches: Iterator,
    workers: int,
    init: Callable,
    initargs: tuple,
    ctx: multiprocessing.context.BaseContext,
) -> Iterator:
    """fn over batches, results in input order, on `workers` worker processes (in this one if 0), each of
    which first calls init(*initargs).

    (multiprocessing.Pool cost about a core-second more per 100 MB here: a second thread unpickles its
    results beside this one, and its worker-watching thread spins while a result waits in the pipe.)
    Tasks go through a Queue, whose feeder thread never lets a large task block this thread while a worker
    is blocked sending a large result."""
    if workers == 0:
        init(*initargs)
        for batch in batches:
            yield fn(batch)
        return
    pool = [_Worker(ctx, fn, init, initargs) for _ in range(workers)]
    finished = False
    try:
        yield from _schedule(pool, batches)
        finished = True
    finally:
        for worker in pool:
            worker.stop(wait=finished)


_END = object()  # the end of the batches (a batch may be any value)


def _schedule(pool: list[_Worker], batches: Iterator) -> Iterator:
    """Each worker gets a new batch as soon as it returns one (IN_FLIGHT queued or in progress), whatever
    the others do; results are read as they come and yielded in input order.

    Workers thus run ahead of a slow batch rather than wait for it (handing batches out in turn, a worker
    sat idle whenever one batch took longer than its neighbours, ~10% of the time here), up to AHEAD
    batches per worker dispatched but not yet yielded: memory stays bounded. Which worker handled a batch
    does not change its result, so the output does not depend on the timing.
    """
    assigned: dict[_Worker, collections.deque[int]] = {worker: collections.deque() for worker in pool}
    by_connection = {worker.results: worker for worker in pool}
    received: dict[int, Any] = {}  # results that came before an earlier one
    limit, next_index, dispatched, exhausted = AHEAD * len(pool), 0, 0, False

    def dispatch() -> None:
        nonlocal dispatched, exhausted
        for worker in pool:
            while not exhausted and len(assigned[worker]) < IN_FLIGHT and dispatched - next_index < limit:
                batch = next(batches, _END)
                if batch is _END:
                    exhausted = True
                    return
                worker.tasks.put(batch)
                assigned[worker].append(dispatched)  # the batch's index in the input
                dispatched += 1

    dispatch()
    while next_index < dispatched:
        if next_index in received:
            yield _unpack(*received.pop(next_index))  # a worker's error too comes in input order
            next_index += 1
            dispatch()
            continue
        busy = [worker.results for worker in pool if assigned[worker]]
        for connection in multiprocessing.connection.wait(busy):
            worker = by_connection[connection]
            received[assigned[worker].popleft()] = worker.receive()
        dispatch()


class _RemoteTraceback(Exception):
    def __str__(self) -> str:
        return str(self.args[0])


def _unpack(ok: bool, value: Any) -> Any:
    """A worker's result, or its error raised here (with the worker's traceback as the cause)."""
    if not ok:
        error, trace = value
        raise error from _RemoteTraceback(f"in a data-preparation worker:\n{trace}")
    return value


class _Worker:
    """One worker process: tasks in through a queue, results back through a pipe."""

    def __init__(
        self, ctx: multiprocessing.context.BaseContext, fn: Callable, init: Callable, initargs: tuple
    ) -> None:
        self.tasks = ctx.Queue()
        self.results, child_end = ctx.Pipe(duplex=False)
        target_args = (fn, init, initargs, self.tasks, child_end)
        self.process = ctx.Process(target=_serve, args=target_args, daemon=True)
        self.process.start()
        child_end.close()

    def receive(self) -> tuple[bool, Any]:
        """The next (True, result) or (False, (error, traceback)); raises if the worker died."""
        try:
            return self.results.recv()
        except EOFError:
            self.process.join(5)
            raise RuntimeError(
                f"a data-preparation worker died (exit code {self.process.exitcode}; -9 is usually the "
                "out-of-memory killer: try fewer --workers)"
            ) from None

    def stop(self, wait: bool) -> None:
        """Let the worker finish (all its results were read), or end it now (after an error here)."""
        if wait:
            self.tasks.put(None)
            self.process.join(10)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join()
        self.tasks.close()
        self.results.close()


def _serve(fn: Callable, init: Callable, initargs: tuple, tasks: Any, results: Any) -> None:
    """A worker's loop: (True, fn(batch)) for each batch, (False, (error, traceback)) on an error, until None.

    Results leave through a sending thread: a result is megabytes, the pipe holds 64 KB, and the main
    process reads one result at a time, so a worker that sent them itself would sit idle while the main
    process reads another worker's result (or packs one)."""
    outbox: queue.SimpleQueue = queue.SimpleQueue()
    sender = threading.Thread(target=_send_all, args=(outbox, results), daemon=True)
    sender.start()
    threading.Thread(target=_exit_when_orphaned, daemon=True).start()
    try:
        init(*initargs)
        while (batch := tasks.get()) is not None:
            try:
                outbox.put((True, fn(batch)))
            except Exception as e:
                outbox.put((False, (_picklable(e), traceback.format_exc())))
    except KeyboardInterrupt:  # Ctrl-C reaches the whole process group; the main process reports it
        pass
    finally:
        outbox.put(None)
        sender.join()


def _exit_when_orphaned(every: float = 1.0) -> None:
    """End this worker once the main process that started it is gone. A main process killed outright
    (SIGKILL, the OOM killer) cannot stop its workers, and they would wait on the task queue forever.

    Forked, a worker sees its parent pid change. From a fork server its parent is the server, which outlives
    the main process as long as any of its children does (each holds the pipe whose closing tells the server
    to exit): there multiprocessing's handle on the real parent (a pipe the main process holds) says it."""
    parent, ppid = multiprocessing.parent_process(), os.getppid()
    while os.getppid() == ppid and (parent is None or parent.is_alive()):
        time.sleep(every)
    os._exit(1)


def _send_all(outbox: queue.SimpleQueue, results: Any) -> None:
    try:
        while (item := outbox.get()) is not None:
            results.send(item)
    except (BrokenPipeError, KeyboardInterrupt):  # the main process stopped reading: it failed or was stopped
        pass


def _picklable(error: Exception) -> Exception:
    try:
        pickle.loads(pickle.dumps(error))
        return error
    except Exception:
        return RuntimeError(f"{type(error).__name__}: {error}")
