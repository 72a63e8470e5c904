"""The pipeline's worker processes: results in input order, errors and dead workers reported, no leftovers."""

from __future__ import annotations

import io
import multiprocessing
import os
from pathlib import Path

import pytest
from tqdm import tqdm

from replitlm.data.encoding import TokenEncoder
from replitlm.data.pipeline import PipelineConfig, _ordered_map, _other_threads, _worker_context


@pytest.fixture
def initargs(tmp_path: Path, spiece_path: Path) -> tuple:
    config = PipelineConfig(inputs=["x"], out=str(tmp_path / "out"), tokenizer=str(spiece_path))
    return config, TokenEncoder(str(spiece_path)), None


@pytest.mark.parametrize(("workers", "method"), [(1, "fork"), (3, "fork"), (2, "forkserver")])
def test_results_come_back_in_input_order(initargs: tuple, workers: int, method: str) -> None:
    batches = [-k for k in range(1, 40)]
    ctx = multiprocessing.get_context(method)
    assert list(_ordered_map(abs, iter(batches), workers, initargs, ctx)) == list(range(1, 40))
    assert not multiprocessing.active_children()  # every worker has exited


def test_a_worker_error_keeps_its_type_and_traceback(initargs: tuple) -> None:
    results = _ordered_map(int, iter(["1", "2", "three", "4"]), 2, initargs, _worker_context())
    assert next(results) == 1 and next(results) == 2
    with pytest.raises(ValueError, match="three") as raised:
        next(results)
    assert "in a data-preparation worker" in str(raised.value.__cause__)
    assert "invalid literal" in str(raised.value.__cause__)
    assert not multiprocessing.active_children()


def test_a_dead_worker_is_reported(initargs: tuple) -> None:
    results = _ordered_map(os._exit, iter([3, 0, 0]), 1, initargs, _worker_context())
    with pytest.raises(RuntimeError, match=r"worker died \(exit code 3"):
        list(results)


def test_the_progress_bar_monitor_does_not_count_as_a_thread() -> None:
    with tqdm(total=1, file=io.StringIO()) as bar:
        bar.update()
        assert not any(type(t).__name__ == "TMonitor" for t in _other_threads())


def test_shard_writer_writes_what_mds_writer_writes(tmp_path: Path) -> None:
    """ShardWriter's samples and shards, one by one or a block of rows at a time, are MDSWriter's, byte for
    byte (shards small enough that the samples span several)."""
    import numpy as np
    from streaming import MDSWriter, StreamingDataset

    from replitlm.data.shards import ShardWriter, sample_columns

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
