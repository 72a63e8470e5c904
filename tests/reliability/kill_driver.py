"""Run by tests/reliability: the tiny training run, with one injected fault, recording every finished batch.

    python tests/reliability/kill_driver.py LOG.jsonl FAULT key=value ...

FAULT is `none`, `batch:N` (SIGKILL this process as batch N+1 starts), `write:N` (SIGKILL half-way through
writing the checkpoint of batch N) or `link:N` (SIGKILL after the checkpoint of batch N is written, between
removing the old `latest` symlink and creating the new one). Each finished batch appends
{"batch": n, "ids": hash of its input ids, "loss": ...} to LOG.jsonl, flushed before the next batch starts.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import signal
import sys

from composer.core import Callback, State
from composer.loggers import Logger

from replitlm.training.config import load_train_config
from replitlm.training.run import train
from tests.training.conftest import TINY


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class BatchLog(Callback):
    def __init__(self, path: str, kill_at: int | None) -> None:
        self.path, self.kill_at = path, kill_at

    def batch_start(self, state: State, logger: Logger) -> None:
        if int(state.timestamp.batch) == self.kill_at:
            die()

    def batch_end(self, state: State, logger: Logger) -> None:
        ids = state.batch["input_ids"].numpy().tobytes()
        record = {"batch": int(state.timestamp.batch), "ids": hashlib.sha256(ids).hexdigest()[:16]}
        with open(self.path, "a") as f:
            f.write(json.dumps({**record, "loss": float(state.loss)}) + "\n")


def install_save_fault(kind: str, batch: int) -> None:
    """Patch Composer's checkpoint writing so that saving the checkpoint of `batch` dies part-way."""
    from composer.callbacks import checkpoint_saver
    from composer.utils import checkpoint

    write = checkpoint._write_checkpoint_file

    def dying_write(state_dict: dict, filename: str) -> None:
        if kind == "write" and f"-ba{batch}-" in filename:
            write(state_dict, filename)
            size = os.path.getsize(filename)
            with open(filename, "r+b") as f:  # what a kill mid-write leaves: the first half
                f.truncate(size // 2)
            die()
        write(state_dict, filename)

    symlink = os.symlink

    def dying_symlink(src: str, dst: str, *args: object, **kwargs: object) -> None:
        if kind == "link" and f"-ba{batch}-" in str(src):
            die()
        symlink(src, dst, *args, **kwargs)

    checkpoint._write_checkpoint_file = dying_write
    checkpoint_saver.os.symlink = dying_symlink  # the saver removes `latest`, then links it anew


def main() -> None:
    run(sys.argv[1], sys.argv[2], sys.argv[3:])


def run(log: str, fault: str, overrides: list[str]) -> None:
    # A process the test's fork server started inherits "forkserver" as its default start method, so its
    # DataLoader workers would come from a fork server of its own. A SIGKILL then orphaned them for good:
    # every child of a fork server holds the pipe whose closing tells the server to exit, and torch's
    # workers only exit once their parent (that server) is gone. `composer train.py` on Linux forks them.
    multiprocessing.set_start_method("fork", force=True)
    kind, _, at = fault.partition(":")
    if kind in ("write", "link"):
        install_save_fault(kind, int(at))
    train(load_train_config(TINY, overrides), [BatchLog(log, int(at) if kind == "batch" else None)])


if __name__ == "__main__":
    main()
