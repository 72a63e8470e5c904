"""The streaming dataset the loaders build: a shard that cannot be prepared fails the epoch, loudly."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import pytest
import streaming.base.stream

from replitlm.training.config import DatasetSection
from replitlm.training.data import CheckedStreamingDataset, DataError, build_dataset


def test_a_shard_that_fails_to_prepare_fails_the_epoch_and_stops_the_threads(
    token_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """streaming 0.13 alone: a short epoch (failure in its thread) or a hang at exit (in the main thread)."""
    shutil.copytree(token_data, tmp_path / "ok")
    shutil.copytree(token_data, tmp_path / "bad")

    def dataset(name: str) -> CheckedStreamingDataset:
        return build_dataset(
            DatasetSection(local=str(tmp_path / name), split="train", shuffle=False), 4, where="t"
        )

    assert sum(1 for _ in dataset("ok")) == 96  # the control: every sample, every shard decompressed

    decompress = streaming.base.stream.Stream._decompress_shard_part

    def second_shard_vanishes(self, zip_info, zip_filename, raw_filename, compression) -> None:
        if "shard.00001" in zip_filename:  # another node renamed it away, a remote lost it, a disk error...
            raise FileNotFoundError(2, "No such file or directory", zip_filename)
        decompress(self, zip_info, zip_filename, raw_filename, compression)

    monkeypatch.setattr(streaming.base.stream.Stream, "_decompress_shard_part", second_shard_vanishes)
    for attempt in range(3):  # the failure lands in streaming's thread or in the main thread, as they race
        bad = dataset("bad")
        with pytest.raises(
            DataError, match=r"t\.dataset: reading the shards failed \(FileNotFoundError.*00001"
        ):
            sum(1 for _ in bad)
        # the process can exit: the threads stopped waiting for the shard that never came
        joined = threading.Thread(target=bad._executor.shutdown, kwargs={"wait": True}, daemon=True)
        joined.start()
        joined.join(timeout=20)
        assert not joined.is_alive(), f"attempt {attempt}: streaming's threads still wait for the shard"
        shutil.rmtree(tmp_path / "bad" / "train")
        shutil.copytree(token_data / "train", tmp_path / "bad" / "train")


def test_several_nodes_without_a_remote_are_told_not_to_share_local(
    token_data: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from composer.utils import dist

    section = DatasetSection(local=str(token_data), split="train", shuffle=False)
    build_dataset(section, 4, where="train_loader")  # one node: nothing to say
    assert "shared storage" not in caplog.text
    monkeypatch.setattr(dist, "get_world_size", lambda: 16)  # 2 nodes of 8
    monkeypatch.setattr(dist, "get_local_world_size", lambda: 8)
    build_dataset(DatasetSection(remote=str(token_data), split="train", shuffle=False), 4, where="x")
    assert "shared storage" not in caplog.text  # a remote: each node has its own cache
    build_dataset(section, 4, where="train_loader")
    assert "train_loader: 2 nodes read shards from `local` with no `remote`" in caplog.text
