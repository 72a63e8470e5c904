"""Kill-and-resume: a training run SIGKILLed five times (at random batches, mid-way through writing a
checkpoint, and between replacing the `latest` link) and restarted with autoresume ends bit-identical to an
uninterrupted run: the same final weights and optimizer state, and the same sample behind every batch. The
run uses dropout (RNG state) and two DataLoader worker processes (reading position), as real runs do."""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import signal
from pathlib import Path

import pytest
import torch

from replitlm.training.resume import repair_latest
from tests.reliability import kill_driver
from tests.training.conftest import tiny_overrides

# Launches processes, trains, or runs the sandbox: in `make test`, not in `make test-fast`.
pytestmark = pytest.mark.integration

BATCHES, SAVE_EVERY = 12, 2
FORKSERVER = multiprocessing.get_context("forkserver")
FORKSERVER.set_forkserver_preload(["tests.reliability.kill_driver"])


def launch(data: Path, run_dir: Path, fault: str) -> int:
    """The driver in a child forked from a server that imported it once (no start-up cost per run; not a
    fork of this process, whose threads could hold locks the child would wait on forever); its exit code,
    negative for a signal."""
    overrides = tiny_overrides(
        data,
        run_dir,
        max_duration=f"{BATCHES}ba",
        save_interval=f"{SAVE_EVERY}ba",
        autoresume=True,
        eval_interval="100ba",
        **{
            "optimizer.name": "decoupled_adamw",  # two state tensors per parameter to compare
            # dropout draws from the RNG every step, and DataLoader workers hold the reading position:
            # both must come back exactly from the checkpoint for the runs to end bit-identical
            "model.resid_pdrop": 0.1,
            "model.emb_pdrop": 0.1,
            "model.attn_config.attn_pdrop": 0.1,
            "train_loader.num_workers": 2,
        },
    )
    child = FORKSERVER.Process(
        target=kill_driver.run, args=(str(run_dir / "batches.jsonl"), fault, overrides)
    )
    child.start()
    child.join(timeout=600)
    return child.exitcode


def faults(seed: int) -> list[str]:
    """Five kills that each leave the run further along: random batches between checkpoints, a checkpoint
    write cut in half, and a kill between removing `latest` and linking it to the new checkpoint."""
    rng = random.Random(seed)
    odd = lambda lo, hi: rng.randrange(lo, hi, 2)  # noqa: E731 - batch numbers between two checkpoints
    return [f"batch:{odd(1, 4)}", "write:4", "link:6", f"batch:{odd(7, 10)}", "write:10"]


def final_state(run_dir: Path) -> dict:
    path = run_dir / "checkpoints" / f"ep0-ba{BATCHES}-rank0.pt"
    state = torch.load(path, map_location="cpu", weights_only=False)["state"]
    return {"model": state["model"], "optimizers": state["optimizers"]}


def assert_equal(a: object, b: object, where: str = "") -> None:
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_equal(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_equal(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def batches_that_count(log: Path) -> dict[int, dict]:
    """Each batch number's last record: a batch redone after a kill replaces the lost attempt."""
    return {r["batch"]: r for r in map(json.loads, log.read_text().splitlines())}


def test_five_sigkills_and_resumes_equal_an_uninterrupted_run(token_data: Path, tmp_path: Path) -> None:
    assert launch(token_data, tmp_path / "straight", "none") == 0
    run_dir = tmp_path / "killed"
    for fault in faults(seed=int(os.environ.get("KILL_SEED", "0"))):
        assert launch(token_data, run_dir, fault) == -signal.SIGKILL, fault
    assert launch(token_data, run_dir, "none") == 0
    checkpoints = {p.name for p in (run_dir / "checkpoints").iterdir()}
    assert {"ep0-ba4-rank0.pt.incomplete", "ep0-ba10-rank0.pt.incomplete"} <= checkpoints  # never resumed
    assert_equal(final_state(tmp_path / "straight"), final_state(run_dir), "state")
    expected, got = (
        batches_that_count(tmp_path / "straight" / "batches.jsonl"),
        batches_that_count(run_dir / "batches.jsonl"),
    )
    assert sorted(got) == list(range(1, BATCHES + 1))
    assert {b: r["ids"] for b, r in got.items()} == {b: r["ids"] for b, r in expected.items()}
    assert {b: r["loss"] for b, r in got.items()} == {b: r["loss"] for b, r in expected.items()}


def test_latest_is_pointed_at_the_newest_complete_checkpoint(tmp_path: Path) -> None:
    import zipfile

    def checkpoint(name: str) -> Path:
        with zipfile.ZipFile(tmp_path / name, "w") as z:
            z.writestr("data.pkl", b"x" * 1000)
        return tmp_path / name

    for batch in (2, 4, 6):
        checkpoint(f"ep0-ba{batch}-rank0.pt")
    (tmp_path / "latest-rank0.pt").symlink_to("ep0-ba2-rank0.pt")
    data = (tmp_path / "ep0-ba6-rank0.pt").read_bytes()
    (tmp_path / "ep0-ba6-rank0.pt").write_bytes(data[: len(data) // 2])  # cut off mid-write
    (tmp_path / "ep0-ba8").mkdir()  # a sharded save that never wrote its .metadata
    note = repair_latest(tmp_path)
    assert os.readlink(tmp_path / "latest-rank0.pt") == "ep0-ba4-rank0.pt"
    assert (tmp_path / "ep0-ba6-rank0.pt.incomplete").exists() and (tmp_path / "ep0-ba8.incomplete").exists()
    assert note == (
        "set aside incomplete ep0-ba8; set aside incomplete ep0-ba6-rank0.pt; "
        "latest-rank0.pt -> ep0-ba4-rank0.pt (was ep0-ba2-rank0.pt)"
    )
    assert repair_latest(tmp_path) is None  # nothing left to do
    (tmp_path / "latest-rank0.pt").unlink()  # killed between removing the link and making the new one
    repair_latest(tmp_path)
    assert os.readlink(tmp_path / "latest-rank0.pt") == "ep0-ba4-rank0.pt"
