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
    """ShardWriter only caches the column coders: its samples and shards are MDSWriter's, byte for byte."""
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
    for name, cls in (("ours", ShardWriter), ("stock", MDSWriter)):
        with cls(out=str(tmp_path / name), columns=sample_columns(16, True), compression="zstd:1") as writer:
            for sample in samples:
                writer.write(sample)
    ours, stock = sorted((tmp_path / "ours").iterdir()), sorted((tmp_path / "stock").iterdir())
    assert [p.name for p in ours] == [p.name for p in stock]
    assert all(a.read_bytes() == b.read_bytes() for a, b in zip(ours, stock, strict=True))
    back = StreamingDataset(local=str(tmp_path / "ours"), shuffle=False, batch_size=1)
    assert (
        np.array_equal(back[39]["tokens"], samples[39]["tokens"]) and back[39]["doc_languages"] == "Python,C"
    )
    with pytest.raises(ValueError, match="shape"):  # a sample of the wrong length
        ShardWriter(out=str(tmp_path / "bad"), columns=sample_columns(16, False)).write(
            {"tokens": np.zeros(15, np.uint32)}
        )
