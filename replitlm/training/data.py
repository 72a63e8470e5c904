"""Dataloaders over the MDS shards that data_prep writes (`tokens`, and `sequence_id` when packed with it).

mosaicml-streaming does the hard parts: local or remote shards with a local cache, mixtures of streams,
deterministic shuffling that does not depend on the number of ranks or workers, and a resumable position
that Composer stores in every checkpoint, so a resumed run sees exactly the samples it had not seen yet.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import numpy as np
import torch
from streaming import Stream, StreamingDataset
from torch.utils.data import DataLoader

from replitlm.training.schema import DatasetSection, LoaderSection

log = logging.getLogger(__name__)


class DataError(ValueError):
    """A batch or dataset does not fit the model (missing column, token ids beyond the vocabulary)."""


def check_local_dataset(local: str | None, remote: str | None, split: str | None, where: str) -> None:
    """Without a remote, the shards must already be on disk: say which index is missing and how to make it."""
    if remote is not None or local is None:
        return
    index = Path(local) / (split or "") / "index.json"
    if not index.is_file():
        raise DataError(
            f"{where}: {index} not found. Make shards with `python data_prep/convert_code_dataset.py --out "
            f"{local}` (it writes train/ and val/), or set `remote` to fetch them."
        )
    check_shards(index, where)


def check_shards(index: Path, where: str) -> None:
    """Every shard the index lists is on disk with the size the index records (a cheap check that catches
    missing, truncated and replaced shards before training starts, instead of a crash hours in)."""
    import json

    try:
        shards = json.loads(index.read_text())["shards"]
        forms = [[f for f in (s["raw_data"], s["zip_data"]) if f] for s in shards]  # either one will do
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{where}: {index} is not a readable MDS index ({exc}); re-run data_prep") from exc
    for files in forms:
        present = [(index.parent / f["basename"], f["bytes"]) for f in files]
        present = [(path, size) for path, size in present if path.is_file()]
        if not present:
            shard = index.parent / files[-1]["basename"]
            raise DataError(f"{where}: {shard} is listed in {index.name} but missing; re-run data_prep")
        if not any(path.stat().st_size == size for path, size in present):
            path, size = present[0]
            raise DataError(
                f"{where}: {path} has {path.stat().st_size} bytes, the index says {size}: truncated or "
                "replaced; re-run data_prep"
            )


# A shard state streaming never uses (it has INVALID..LOCAL = 0..3): preparing this shard failed. The states
# live in shared memory that every DataLoader worker and every rank on the node sees.
SHARD_FAILED = 255


class ShardFailedElsewhere(RuntimeError):
    """Another process on this node (a DataLoader worker, another rank) failed to prepare a shard we need."""


class CheckedStreamingDataset(StreamingDataset):
    """A StreamingDataset whose epoch fails loudly, and lets the process exit, when a shard cannot be read.

    streaming 0.13 prepares (downloads, decompresses) shards in background threads. When a thread fails, the
    iterator just stops: a short epoch on this rank while the others go on, so the run hangs until a
    collective times out, or trains on with fewer samples. When the main thread's own attempt fails, the
    error propagates but the threads wait forever for the shard, and the process hangs at exit joining
    them. And the shard stays marked "being prepared" in the state every worker and rank on the node
    shares, so they wait for it forever too (a DataLoader delivers batches in order: the failed worker's
    error waits behind the batch of a worker that hangs). Here a failed shard is marked failed for all of
    them, and each raises a DataError naming the section, after telling its threads to stop. An epoch whose
    loop is dropped unfinished stops its threads too, instead of leaving them polling until the next epoch.
    """

    def __init__(self, *, where: str = "dataset", **kwargs: Any) -> None:
        self.where = where  # the config section, for errors
        super().__init__(**kwargs)

    def prepare_shard(self, shard_id: int, blocking: bool = True) -> None:
        if self._shard_states[shard_id] == SHARD_FAILED:
            raise ShardFailedElsewhere(self._failed_elsewhere(shard_id))
        try:
            super().prepare_shard(shard_id, blocking)
        except Exception as exc:
            if self._shard_states[shard_id] == SHARD_FAILED:
                # Marked while we looked (streaming then says "Invalid shard state: 255"): a consequence of
                # another thread's or process's failure, whose cause is the one to report.
                raise ShardFailedElsewhere(self._failed_elsewhere(shard_id)) from exc
            # recorded before the mark, so that this process reports this cause and not "elsewhere"
            self._note_cause(exc)
            log.error("%s: preparing shard %s failed: %s", self.where, self._shard_name(shard_id), exc)
            self._shard_states[shard_id] = SHARD_FAILED
            raise

    def on_exception(self, future: Future) -> None:
        if future.exception() is not None:
            self._note_cause(future.exception())  # kept for __iter__; super() logs it and stops the threads
        super().on_exception(future)

    def _note_cause(self, exc: BaseException) -> None:
        """The first failure is the cause; what other threads then hit (the shard marked failed, the event
        set) are its consequences and must not replace it in the error users read."""
        if getattr(self, "_shard_error", None) is None:
            self._shard_error = exc

    def __iter__(self) -> Iterator[dict[str, Any]]:
        if not hasattr(self, "_event"):  # super() makes a plain Event only when there is none
            self._event = _StopOnFailedShard(self)
        epoch = None  # streaming's per-epoch iterator, whose threads prepare shards ahead of this loop
        try:
            for sample in super().__iter__():
                epoch = epoch or self._iterator  # set by super() for this epoch, before its first sample
                yield sample
        except GeneratorExit:
            # The loop was dropped mid-epoch (an eval subset, the end of training): streaming's threads
            # would otherwise poll every few milliseconds until the next epoch or the end of the process.
            if epoch is not None:
                epoch.non_blocking_exit()
            raise
        except Exception as exc:  # from the main thread, or streaming's "Background thread failed" at start
            self._fail(getattr(self, "_shard_error", None) or exc)
        if self._event.is_set():  # a thread failed (or a shard did elsewhere) and streaming ended the epoch
            self._fail(getattr(self, "_shard_error", None))

    def any_shard_failed(self) -> bool:
        """Whether some process on the node marked a shard failed (its cause kept for __iter__ if we have
        none of our own)."""
        failed = np.flatnonzero(self._shard_states.numpy() == SHARD_FAILED)
        if len(failed):
            self._note_cause(ShardFailedElsewhere(self._failed_elsewhere(int(failed[0]))))
        return bool(len(failed))

    def _failed_elsewhere(self, shard_id: int) -> str:
        return (
            f"shard {self._shard_name(shard_id)} could not be prepared by another DataLoader worker or rank "
            "on this node; its log says why"
        )

    def _shard_name(self, shard_id: int) -> str:
        raw, zipped = self.shards[shard_id].file_pairs[0]
        return (zipped or raw).basename

    def _fail(self, cause: BaseException | None) -> None:
        if hasattr(self, "_event"):
            self._event.set()  # streaming's threads poll it: they stop waiting for the shard
        what = f"{type(cause).__name__}: {cause}" if cause is not None else "a background thread stopped"
        raise DataError(
            f"{self.where}: reading the shards failed ({what}), so this rank cannot finish the epoch. "
            "Check that every shard the index lists is in `remote` (or `local`), and that no two nodes share "
            "one `local` folder: each node decompresses shards there (give each node its own `local` and put "
            "the shared folder in `remote`)."
        ) from cause


class _StopOnFailedShard(threading.Event):
    """The event streaming's threads and sample loop poll every few milliseconds to stop early, also set
    once any process on the node marked a shard failed (looked up at most every LOOK_EVERY seconds)."""

    LOOK_EVERY = 0.05

    def __init__(self, dataset: CheckedStreamingDataset) -> None:
        super().__init__()
        self.dataset, self.next_look = dataset, 0.0

    def is_set(self) -> bool:
        if not super().is_set() and time.monotonic() >= self.next_look:
            self.next_look = time.monotonic() + self.LOOK_EVERY
            if self.dataset.any_shard_failed():
                self.set()
        return super().is_set()


def build_dataset(
    ds: DatasetSection, batch_size: int, shuffle: bool | None = None, where: str = ""
) -> CheckedStreamingDataset:
    for name, s in (ds.streams or {}).items():
        check_local_dataset(s.local, s.remote, s.split or ds.split, f"{where}.dataset.streams.{name}")
    if not ds.streams:
        check_local_dataset(ds.local, ds.remote, ds.split, f"{where}.dataset")
    streams = None
    if ds.streams:
        streams = [
            Stream(
                local=s.local,
                remote=s.remote,
                split=s.split,
                proportion=s.proportion,
                repeat=s.repeat,
                choose=s.choose,
            )
            for s in ds.streams.values()
        ]
    remotes = [s.remote for s in ds.streams.values()] if ds.streams else [ds.remote]
    if None in remotes:
        warn_if_nodes_share_local(where)
    return CheckedStreamingDataset(
        where=f"{where}.dataset",
        streams=streams,
        local=None if streams else ds.local,
        remote=None if streams else ds.remote,
        split=ds.split,
        shuffle=ds.shuffle if shuffle is None else shuffle,
        shuffle_seed=ds.shuffle_seed,
        shuffle_algo=ds.shuffle_algo,
        shuffle_block_size=ds.shuffle_block_size,
        num_canonical_nodes=ds.num_canonical_nodes,
        predownload=ds.predownload,
        cache_limit=ds.cache_limit,
        download_retry=ds.download_retry,
        download_timeout=ds.download_timeout,
        epoch_size=ds.epoch_size,
        batch_size=batch_size,
    )


def warn_if_nodes_share_local(where: str) -> None:
    """Several nodes and no `remote`: warn (local rank 0 of each node) that `local` must be node-local."""
    from composer.utils import dist

    nodes = dist.get_world_size() // max(1, dist.get_local_world_size())
    if nodes > 1 and dist.get_local_rank() == 0:
        log.warning(
            "%s: %d nodes read shards from `local` with no `remote`. Each node decompresses shards into its "
            "`local`; if that is one folder on shared storage the nodes overwrite each other's files. Put "
            "the shared folder in `remote` and give `local` a node-local path (e.g. /tmp/mds-cache).",
            where,
            nodes,
        )


class TokenCollator:
    """Samples → a batch: `input_ids`, `labels` (the model shifts them), and when asked `sequence_id`.

    Labels are the sample's `labels` when it has them (finetuning: -100 over the prompt), else its tokens.
    Samples longer than `max_seq_len` are cut; shorter ones (a last partial sample, an instruct example) are
    right-padded with `pad_id`, masked in `attention_mask` and ignored in `labels`.
    """

    def __init__(self, max_seq_len: int, vocab_size: int, pad_id: int, use_sequence_id: bool) -> None:
        self.max_seq_len, self.vocab_size, self.pad_id = max_seq_len, vocab_size, pad_id
        self.use_sequence_id = use_sequence_id

    def __call__(self, samples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        tokens = [np.asarray(s["tokens"][: self.max_seq_len], dtype=np.int64) for s in samples]
        length = max(len(t) for t in tokens)
        input_ids = torch.full((len(samples), length), self.pad_id, dtype=torch.long)
        labels = torch.full((len(samples), length), -100, dtype=torch.long)
        mask = torch.zeros((len(samples), length), dtype=torch.long)
        for row, (sample, ids) in enumerate(zip(samples, tokens, strict=True)):
            input_ids[row, : len(ids)] = torch.from_numpy(ids)
            own = sample.get("labels")
            labels[row, : len(ids)] = torch.from_numpy(
                ids if own is None else np.asarray(own[: self.max_seq_len], dtype=np.int64)
            )
            mask[row, : len(ids)] = 1
        top = int(input_ids.max())
        if top >= self.vocab_size:
            raise DataError(
                f"token id {top} is outside the model's vocabulary ({self.vocab_size}): were the shards made with "
                "another tokenizer? Re-run data_prep with the model's tokenizer, or set model.vocab_size."
            )
        batch = {"input_ids": input_ids, "labels": labels}
        if not bool(mask.all()):
            batch["attention_mask"] = mask
        if self.use_sequence_id:
            batch["sequence_id"] = self._sequence_id(samples, length)
        return batch

    def _sequence_id(self, samples: list[dict[str, Any]], length: int) -> torch.Tensor:
        if "sequence_id" not in samples[0]:
            raise DataError(
                "the model attends per document (attn_config.attn_uses_sequence_id) but the shards have no "
                "`sequence_id` column: make them with `convert_code_dataset.py --sequence-id`, or set "
                "train_loader.dataset.use_sequence_id=false"
            )
        out = torch.zeros((len(samples), length), dtype=torch.long)
        for row, sample in enumerate(samples):
            ids = np.asarray(sample["sequence_id"][: self.max_seq_len], dtype=np.int64)
            out[row, : len(ids)] = torch.from_numpy(ids)
            out[row, len(ids) :] = ids[-1] + 1 if len(ids) else 0  # padding: a document of its own
        return out


def build_dataloader(
    loader: LoaderSection,
    batch_size: int,
    collator: TokenCollator,
    train: bool,
) -> DataLoader:
    where = "train_loader" if train else "eval_loader"
    dataset = build_dataset(loader.dataset, batch_size, shuffle=None if train else False, where=where)
    return torch_dataloader(dataset, loader, batch_size, collator, train)


def torch_dataloader(
    dataset: Any,
    loader: LoaderSection,
    batch_size: int,
    collator: TokenCollator,
    train: bool,
    sampler: Any = None,
) -> DataLoader:
    """A torch DataLoader with the loader section's worker settings (eval batches are never dropped)."""
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        collate_fn=collator,
        drop_last=loader.drop_last if train else False,
        num_workers=loader.num_workers,
        pin_memory=loader.pin_memory and torch.cuda.is_available(),
        prefetch_factor=loader.prefetch_factor if loader.num_workers > 0 else None,
        persistent_workers=loader.persistent_workers and loader.num_workers > 0,
        timeout=loader.timeout,
    )


def tokens_in_batch(batch: dict[str, torch.Tensor]) -> dict[str, int]:
    """Composer's token counts of a batch: `total`, the real tokens (padding excluded), for `tok` durations
    and the speed monitor; `loss_generating`, the labels the model's shift keeps (the first label of a row
    predicts nothing), by which gradient accumulation weighs microbatches and ranks."""
    ids = batch["input_ids"]
    mask = batch.get("attention_mask")
    total = int(mask.sum()) if mask is not None else ids.numel()
    labels = batch.get("labels")
    if labels is None:  # every next token is a target, except after each row's last real token
        return {"total": total, "loss_generating": max(0, total - ids.shape[0])}
    return {"total": total, "loss_generating": int((labels[:, 1:] != -100).sum())}


def data_spec(loader: DataLoader) -> Any:
    """The loader as a Composer DataSpec that counts tokens as `tokens_in_batch` does."""
    from composer.core import DataSpec

    return DataSpec(loader, get_num_tokens_in_batch=tokens_in_batch)
