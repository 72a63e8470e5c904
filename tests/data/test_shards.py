"""ShardWriter: streaming's MDSWriter, faster, with the same bytes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from streaming import MDSWriter, StreamingDataset

from replitlm.data.shards import ShardWriter, sample_columns


def test_shard_writer_writes_what_mds_writer_writes(tmp_path: Path) -> None:
    """ShardWriter's samples and shards, one by one or a block of rows at a time, are MDSWriter's, byte for
    byte (shards small enough that the samples span several)."""
    rng = np.random.default_rng(0)
    samples = [
        {
            "tokens": rng.integers(0, 32768, 16).astype(np.uint32),
            "sequence_id": np.sort(rng.integers(0, 3, 16)).astype(np.uint16),
            "doc_languages": "Python,C",
        }
        for _ in range(40)
    ]
    options = {"columns": sample_columns(16, True), "compression": "zstd:1", "size_limit": 1 << 10}
    for name, cls in (("ours", ShardWriter), ("stock", MDSWriter)):
        with cls(out=str(tmp_path / name), **options) as writer:
            for sample in samples:
                writer.write(sample)
    with ShardWriter(out=str(tmp_path / "rows"), **options) as writer:
        for block in (samples[:7], samples[7:8], samples[8:]):
            writer.write_rows(
                **{key: np.stack([s[key] for s in block]) for key in ("tokens", "sequence_id")},
                doc_languages=[s["doc_languages"] for s in block],
            )
    stock = sorted((tmp_path / "stock").iterdir())
    assert len(stock) > 3  # an index and several shards
    for name in ("ours", "rows"):
        ours = sorted((tmp_path / name).iterdir())
        assert [p.name for p in ours] == [p.name for p in stock]
        assert all(a.read_bytes() == b.read_bytes() for a, b in zip(ours, stock, strict=True)), name
    back = StreamingDataset(local=str(tmp_path / "ours"), shuffle=False, batch_size=1)
    assert (
        np.array_equal(back[39]["tokens"], samples[39]["tokens"]) and back[39]["doc_languages"] == "Python,C"
    )
    bad = ShardWriter(out=str(tmp_path / "bad"), columns=sample_columns(16, False))
    with pytest.raises(ValueError, match="shape"):  # a sample of the wrong length
        bad.write({"tokens": np.zeros(15, np.uint32)})
    with pytest.raises(ValueError, match=r"column tokens: rows of int64 \(16,\), declared uint32 \(16,\)"):
        bad.write_rows(tokens=np.zeros((2, 16), np.int64))
    with pytest.raises(ValueError, match="needs the columns"):
        bad.write_rows(tokens=np.zeros((2, 16), np.uint32), sequence_id=np.zeros((2, 16), np.uint16))


def _tokens(n: int) -> np.ndarray:
    return np.arange(n * 16, dtype=np.uint32).reshape(n, 16)


def test_finishing_waits_for_queued_uploads_without_polling(tmp_path: Path, monkeypatch) -> None:
    """streaming sleeps a whole second when an upload is still queued as the index is written; ShardWriter
    waits for the queue instead (the sleep is made to fail here, with an upload held in the queue)."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    import streaming.base.format.base.writer as base_writer

    def no_sleep(seconds: float) -> None:
        raise AssertionError(f"slept {seconds} s")

    monkeypatch.setattr(base_writer, "sleep", no_sleep)
    writer = ShardWriter(out=str(tmp_path / "out"), columns=sample_columns(16, False), size_limit=1 << 10)
    writer.executor = ThreadPoolExecutor(max_workers=1)
    release = threading.Event()
    writer.executor.submit(release.wait)  # holds the queue: the shards' uploads wait behind it
    threading.Timer(0.3, release.set).start()
    writer.write_rows(tokens=_tokens(40))
    writer.finish()
    back = StreamingDataset(local=str(tmp_path / "out"), shuffle=False, batch_size=1)
    assert len(back) == 40 and np.array_equal(back[39]["tokens"], _tokens(40)[39])


def test_a_failure_writing_a_shard_in_the_background_surfaces(tmp_path: Path, monkeypatch) -> None:
    writer = ShardWriter(out=str(tmp_path / "out"), columns=sample_columns(16, False), size_limit=1 << 10)

    def disk_full(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(writer, "_process_file", disk_full)
    with pytest.raises(OSError, match="No space left"):
        writer.write_rows(tokens=_tokens(40))  # the first shard fails while the next ones are filled
        writer.finish()
    writer.abandon()  # what the pipeline does on an error: nothing is left running
    assert not writer._background._threads or all(not t.is_alive() for t in writer._background._threads)
