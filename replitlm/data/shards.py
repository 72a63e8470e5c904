"""Writing MDS shards of packed token samples (ShardWriter), and reading small local MDS datasets whole."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from streaming import MDSWriter
from streaming.base.format.mds.encodings import NDArray, _get_coder


class ShardWriter(MDSWriter):
    """streaming's MDSWriter, faster for many samples of the same shape; the bytes are the same (tests compare
    them with MDSWriter's).

    The stock `encode_sample` parses every column's encoding string for every sample, and its array coder
    looks the dtype up by name; for 2048-token samples that was most of the main process's time spent
    writing shards. Here each column's coder is made once, and `write_rows` takes a block of samples column
    by column: a fixed-shape array column is checked once per block and each sample is one row's bytes.

    A full shard is compressed and written by a background thread (zstd releases the GIL), one shard at a
    time, so the caller goes on meanwhile: in data preparation the main process stalled ~0.5 s per 64 MB
    shard, long enough for the workers to run out of batches. Errors there surface at the next shard or in
    `finish`.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._coders = [_get_coder(encoding) for encoding in self.column_encodings]
        self._background = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shard-writer")
        self._in_flight: Future | None = None

    def encode_sample(self, sample: dict[str, Any] | bytes) -> bytes:
        if isinstance(sample, bytes):  # from write_rows: already encoded
            return sample
        return self._join(
            [coder.encode(sample[name]) for name, coder in zip(self.column_names, self._coders, strict=True)]
        )

    def write_rows(self, **columns: Any) -> None:
        """Write samples given column by column: sample i is {name: columns[name][i]} (every column named)."""
        if sorted(columns) != sorted(self.column_names):
            raise ValueError(f"write_rows needs the columns {self.column_names}, got {sorted(columns)}")
        parts = [
            self._encode_column(name, coder, columns[name])
            for name, coder in zip(self.column_names, self._coders, strict=True)
        ]
        for sample in zip(*parts, strict=True):
            self.write(self._join(sample))  # MDSWriter.write: shard boundaries as for any sample

    def _encode_column(self, name: str, coder: Any, values: Any) -> list[bytes]:
        if not isinstance(coder, NDArray) or coder.shape is None or coder.dtype is None:
            return [coder.encode(value) for value in values]  # not a fixed-shape array: sample by sample
        block = np.asarray(values)
        if block.dtype != np.dtype(coder.dtype) or block.shape[1:] != tuple(coder.shape):
            raise ValueError(
                f"column {name}: rows of {block.dtype} {block.shape[1:]}, declared {coder.dtype} {coder.shape}"
            )
        return [row.tobytes() for row in np.ascontiguousarray(block)]

    def flush_shard(self) -> None:
        """streaming's JointWriter.flush_shard, with compressing and writing the file in the background."""
        raw_name, zip_name = self._name_next_shard()
        raw_data = self.encode_joint_shard()
        self._wait_for_shard()  # one shard in flight at most: memory stays bounded
        entry: dict[str, Any] = {"samples": len(self.new_samples)}
        self.shards.append(entry)  # now, in order: the next shard's name counts the entries
        self._in_flight = self._background.submit(self._write_shard, entry, raw_data, raw_name, zip_name)

    def _write_shard(
        self, entry: dict[str, Any], raw_data: bytes, raw_name: str, zip_name: str | None
    ) -> None:
        raw_info, zip_info = self._process_file(raw_data, raw_name, zip_name)
        entry.update(raw_data=raw_info, zip_data=zip_info, **self.get_config())
        future = self.executor.submit(self.cloud_writer.upload_file, zip_name or raw_name)
        future.add_done_callback(self.exception_callback)

    def _wait_for_shard(self) -> None:
        in_flight, self._in_flight = self._in_flight, None
        if in_flight is not None:
            in_flight.result()  # raises what the background thread raised

    def _write_index(self) -> None:
        self._wait_for_shard()
        # streaming polls its upload queue with sleep(1) before writing the index: up to a second lost per
        # dataset for nothing (local output). A no-op through the same queue (first in, first out) returns
        # once every earlier upload has left the queue.
        self.executor.submit(lambda: None).result()
        super()._write_index()

    def abandon(self) -> None:
        """Stop after an error elsewhere: wait for the shard being written, ignoring its errors."""
        with contextlib.suppress(Exception):
            self._wait_for_shard()
        self._background.shutdown(wait=True)
        self.cancel_future_jobs()

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self._background.shutdown(wait=True)

    def _join(self, data: Sequence[bytes]) -> bytes:
        """A sample's bytes: the sizes of its variable-size columns, then every column's bytes."""
        sizes = []
        for name, size, datum in zip(self.column_names, self.column_sizes, data, strict=True):
            if size is None:
                sizes.append(len(datum))
            elif size != len(datum):
                raise ValueError(f"column {name}: {len(datum)} bytes where {size} were declared")
        return np.array(sizes, np.uint32).tobytes() + b"".join(data)


def sample_columns(max_seq_len: int, with_sequence_id: bool) -> dict[str, str]:
    """MDS columns of a packed sample; every sample holds exactly max_seq_len tokens, so the shape is fixed
    (recorded in the index, and no per-sample shape header to write or parse)."""
    columns = {"tokens": f"ndarray:uint32:{max_seq_len}"}
    if with_sequence_id:
        columns["sequence_id"] = f"ndarray:uint16:{max_seq_len}"
        columns["doc_languages"] = "str"
    return columns


def read_local_mds(local: str, split: str | None = None) -> Iterator[dict[str, Any]]:
    """Every sample of MDS shards on local disk, in order, through streaming's own shard readers but without a
    StreamingDataset: for reading a small dataset whole in one process (instruct data at start-up).

    A StreamingDataset keeps its shared-memory handles open until the process exits, and each one opens those
    of the datasets before it again, so a process that builds many leaks descriptors quadratically; this needs
    none. Compressed shards are decompressed next to the originals, as StreamingDataset does (atomically)."""
    from streaming.base.compression import decompress
    from streaming.base.format import reader_from_json

    root = Path(local, split or "")
    for shard in json.loads((root / "index.json").read_text())["shards"]:
        reader = reader_from_json(local, split, shard)
        raw = root / shard["raw_data"]["basename"]
        if not raw.exists():
            zipped = root / shard["zip_data"]["basename"]
            partial = raw.with_name(f".{raw.name}.partial")
            partial.write_bytes(decompress(shard["compression"], zipped.read_bytes()))
            partial.replace(raw)
        for i in range(reader.samples):
            yield reader.get_item(i)
