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
