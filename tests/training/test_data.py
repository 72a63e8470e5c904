"""The streaming dataset the loaders build: a shard that cannot be prepared fails the epoch, loudly."""

from __future__ import annotations

import shutil
import sys
import threading
import time
import traceback
from pathlib import Path

import pytest
import streaming.base.stream

from replitlm.training.config import DatasetSection, LoaderSection
from replitlm.training.data import (
    SHARD_FAILED,
    CheckedStreamingDataset,
    DataError,
    ShardFailedElsewhere,
    TokenCollator,
    build_dataloader,
    build_dataset,
)


def make_second_shard_vanish(monkeypatch: pytest.MonkeyPatch, after_seconds: float = 0.0) -> None:
    """Decompressing shard 1 fails, as when another node renamed it away, a remote lost it, a disk error..."""
    decompress = streaming.base.stream.Stream._decompress_shard_part

    def fail_on_shard_1(self, zip_info, zip_filename, raw_filename, compression) -> None:
        if "shard.00001" in zip_filename:
            time.sleep(after_seconds)  # meanwhile other processes see the shard "being prepared" and wait
            raise FileNotFoundError(2, "No such file or directory", zip_filename)
        decompress(self, zip_info, zip_filename, raw_filename, compression)

    monkeypatch.setattr(streaming.base.stream.Stream, "_decompress_shard_part", fail_on_shard_1)


def zipped_copy(source: Path, dest: Path) -> Path:
    """A copy with only the zstd shards: tests that train on the session's shards decompress them in place,
    and a copy with the raw shards would never decompress (nor fail to)."""
    shutil.copytree(source, dest, ignore=shutil.ignore_patterns("*.mds"))
    return dest


@pytest.fixture
def second_shard_vanishes(monkeypatch: pytest.MonkeyPatch) -> None:
    make_second_shard_vanish(monkeypatch)


def threads_stop(dataset: CheckedStreamingDataset, within: float = 20) -> bool:
    """streaming's shard threads finish (so the process can exit, and they stop polling)."""
    joined = threading.Thread(target=dataset._executor.shutdown, kwargs={"wait": True}, daemon=True)
    joined.start()
    joined.join(timeout=within)
    return not joined.is_alive()


def test_a_shard_that_fails_to_prepare_fails_the_epoch_and_stops_the_threads(
    token_data: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """streaming 0.13 alone: a short epoch (failure in its thread) or a hang at exit (in the main thread)."""
    zipped_copy(token_data, tmp_path / "ok")
    zipped_copy(token_data, tmp_path / "bad")

    def dataset(name: str) -> CheckedStreamingDataset:
        return build_dataset(
            DatasetSection(local=str(tmp_path / name), split="train", shuffle=False), 4, where="t"
        )

    assert sum(1 for _ in dataset("ok")) == 96  # the control: every sample, every shard decompressed

    request.getfixturevalue("second_shard_vanishes")  # only now: the control above reads every shard
    for attempt in range(3):  # the failure lands in streaming's thread or in the main thread, as they race
        bad = dataset("bad")
        with pytest.raises(
            DataError, match=r"t\.dataset: reading the shards failed \(FileNotFoundError.*00001"
        ):
            sum(1 for _ in bad)
        # the process can exit: the threads stopped waiting for the shard that never came
        assert threads_stop(bad), f"attempt {attempt}: streaming's threads still wait for the shard"
        shutil.rmtree(tmp_path / "bad" / "train")
        zipped_copy(token_data / "train", tmp_path / "bad" / "train")


@pytest.mark.integration  # launches processes or the sandbox
@pytest.mark.timeout(120)  # the bug this guards against is a hang: fail in minutes, not at the suite's limit
@pytest.mark.parametrize("failing_takes", [0.0, 1.0], ids=["fails-at-once", "fails-while-others-wait"])
def test_the_error_reaches_the_training_loop_from_dataloader_workers(
    token_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing_takes: float
) -> None:
    """The shipped YAMLs read shards in DataLoader worker processes: the DataError must come through them.

    When the failing worker takes its time, the other one finds the shard "being prepared" and waits for it;
    the DataLoader delivers batches in order, so unless the waiting worker gives up too, the failed worker's
    error queues behind a batch that never comes (a hang seen in CI)."""
    make_second_shard_vanish(monkeypatch, after_seconds=failing_takes)
    zipped_copy(token_data, tmp_path / "bad")
    section = DatasetSection(local=str(tmp_path / "bad"), split="train", shuffle=False)
    loader = LoaderSection(dataset=section, num_workers=2)
    collator = TokenCollator(max_seq_len=32, vocab_size=32768, pad_id=2, use_sequence_id=False)
    with pytest.raises(DataError, match=r"train_loader\.dataset: reading the shards failed .*00001"):
        for _ in build_dataloader(loader, 4, collator, train=True):
            pass


@pytest.mark.integration  # launches processes or the sandbox
def test_a_shard_another_process_failed_fails_this_one_too(token_data: Path, tmp_path: Path) -> None:
    """Shard states are shared by every worker and rank on a node: one marked failed is not waited for."""
    zipped_copy(token_data, tmp_path / "ds")
    dataset = build_dataset(
        DatasetSection(local=str(tmp_path / "ds"), split="train", shuffle=False), 4, where="t"
    )
    dataset._shard_states[1] = SHARD_FAILED  # as another process's CheckedStreamingDataset leaves it
    with pytest.raises(DataError, match=r"shard\.00001\.mds\.zstd could not be prepared by another"):
        sum(1 for _ in dataset)
    assert threads_stop(dataset), "streaming's threads still wait for the shard"


def test_the_first_failure_is_the_cause_users_read(
    token_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two threads reach the failing shard: the one that loses the race finds it marked failed between our
    check and streaming's ("Invalid shard state: 255", seen in CI) and must not replace the real cause."""
    from streaming import StreamingDataset

    make_second_shard_vanish(monkeypatch)
    zipped_copy(token_data, tmp_path / "ds")
    dataset = build_dataset(
        DatasetSection(local=str(tmp_path / "ds"), split="train", shuffle=False), 4, where="t"
    )
    with pytest.raises(FileNotFoundError):  # the first thread: the real cause
        dataset.prepare_shard(1)
    assert dataset._shard_states[1] == SHARD_FAILED

    def marked_while_we_looked(self, shard_id: int, blocking: bool = True) -> None:
        raise RuntimeError(f"Invalid shard state: {self._shard_states[shard_id]}")  # streaming's words

    monkeypatch.setattr(StreamingDataset, "prepare_shard", marked_while_we_looked)
    real_states = dataset._shard_states
    dataset._shard_states = StaleAtFirstLook(real_states)
    with pytest.raises(ShardFailedElsewhere):  # the second thread: a consequence, said as one
        dataset.prepare_shard(1)
    dataset._shard_states = real_states
    monkeypatch.undo()  # streaming's own prepare_shard again: the loop below meets the failed shard
    with pytest.raises(DataError, match=r"t\.dataset: reading the shards failed \(FileNotFoundError.*00001"):
        sum(1 for _ in dataset)
    assert threads_stop(dataset), "streaming's threads still wait for the shard"


class StaleAtFirstLook:
    """The shard states as the thread that loses the race sees them: shard not yet failed at our check,
    failed at the next look (streaming's SharedArray otherwise)."""

    def __init__(self, states: object) -> None:
        self.states, self.looked = states, False

    def __getitem__(self, index: int) -> int:
        if not self.looked:
            self.looked = True
            return 0
        return self.states[index]

    def __getattr__(self, name: str) -> object:
        return getattr(self.states, name)


def shard_threads_polling(dataset: CheckedStreamingDataset, within: float = 10) -> int:
    """How many of the dataset's threads are still in streaming's prepare/ready loops after `within` s."""
    deadline = time.monotonic() + within
    while True:
        frames = sys._current_frames()
        busy = [
            t
            for t in list(dataset._executor._threads)
            if t.ident in frames
            and any(
                f.name in ("_prepare_thread", "_ready_thread")
                for f in traceback.extract_stack(frames[t.ident])
            )
        ]
        if not busy or time.monotonic() > deadline:
            return len(busy)
        time.sleep(0.05)


def test_a_loop_dropped_mid_epoch_stops_the_shard_threads(token_data: Path) -> None:
    """Eval subsets and the end of training leave an epoch unfinished: its threads must not poll on."""
    dataset = build_dataset(DatasetSection(local=str(token_data), split="train", shuffle=False), 4)
    first = iter(dataset)
    next(first)
    assert shard_threads_polling(dataset, within=0) == 2  # the control: prepare and ready run ahead
    first.close()  # what dropping the DataLoader's iterator does to its dataset's generator
    assert shard_threads_polling(dataset) == 0, "streaming's threads poll on after the loop was dropped"

    second = iter(dataset)  # a new epoch begun before the last one's loop is dropped (as a DataLoader may)
    next(second)
    third = iter(dataset)
    next(third)
    second.close()  # must stop only its own epoch's threads
    assert sum(1 for _ in third) == 95


def test_several_nodes_without_a_remote_are_told_not_to_share_local(
    token_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from composer.utils import dist

    section = DatasetSection(local=str(token_data), split="train", shuffle=False)
    build_dataset(section, 4, where="train_loader")  # one node: nothing to say
    assert "shared storage" not in caplog.text
    monkeypatch.setattr(dist, "get_world_size", lambda: 16)  # 2 nodes of 8
    monkeypatch.setattr(dist, "get_local_world_size", lambda: 8)
    cached = DatasetSection(
        remote=str(token_data), local=str(tmp_path / "cache"), split="train", shuffle=False
    )
    build_dataset(cached, 4, where="x")
    assert "shared storage" not in caplog.text  # a remote: each node has its own cache
    build_dataset(section, 4, where="train_loader")
    assert "train_loader: 2 nodes read shards from `local` with no `remote`" in caplog.text
