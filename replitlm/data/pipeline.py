"""Raw code -> filtered, deduplicated, decontaminated, tokenized, packed MDS shards.

    readers (main process, streaming: paths, or records)  ->  workers, a batch at a time: read, filters,
    content hash, tokenize, decontaminate, MinHash signatures  ->  main process, in input order: dedup,
    train/val split by content hash, mixture weights, packing  ->  MDS shards (zstd) in a staging folder
    ->  stats.json  ->  rename into place (or upload)

The workers' work is most of the CPU, so they see files as bytes (ASCII files are filtered and tokenized
without decoding) and send each batch back as a few columns and one token array.

Nothing is held whole in memory: at most a few batches are in flight, and the dedup state is 8 bytes per
kept file (plus 8 bytes per LSH band with near-dedup, ~112 at the defaults). A run is all-or-nothing: an
interrupted run leaves only the staging folder, which the next run removes and redoes; the same input and
seed give identical bytes.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm import tqdm

from replitlm.data.decontam import BenchmarkIndex, humaneval_path, read_benchmark_texts
from replitlm.data.dedup import Deduplicator, band_keys, content_digest, lsh_bands, minhash_signatures
from replitlm.data.encoding import TokenEncoder
from replitlm.data.filters import (
    PERMISSIVE_LICENSES,
    QUALITY_GROUP,
    QualityFilter,
    decode,
    is_blank,
    license_allowed,
)
from replitlm.data.languages import REPLIT_LANGUAGES, canonical_language
from replitlm.data.sources import RawDoc, iter_inputs, load
from replitlm.data.workers import ordered_map, worker_context
from replitlm.fields import cli

if TYPE_CHECKING:
    from replitlm.data.shards import ShardWriter

BATCH_DOCS = 256  # each batch costs a sentencepiece call (~0.3 ms of set-up) and a round trip
BATCH_BYTES = 4 << 20


# --help groups of the command's options
IO, PACK, SELECT = "input and output", "tokenizing and packing", "selection"
QUALITY, DEDUP = QUALITY_GROUP, "deduplication and decontamination"
ENGINE = "engine (past one machine: --engine spark)"
ENGINES = ("local", "spark")


def parse_mixture(text: str) -> dict[str, float]:
    """'Python=2,Markdown=0.5' -> {language: weight}."""
    mixture = {}
    for part in filter(None, text.split(",")):
        lang, sep, weight = part.rpartition("=")
        if not sep:
            raise argparse.ArgumentTypeError(f"'{part}' is not LANGUAGE=WEIGHT")
        try:
            mixture[canonical_language(lang.strip())] = float(weight)
        except ValueError as e:
            raise argparse.ArgumentTypeError(f"weight '{weight}' of {lang} is not a number") from e
    return mixture


def _comma_list(text: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in text.split(",") if x.strip())


def _languages(text: str) -> tuple[str, ...] | None:
    return None if text == "all" else tuple(canonical_language(x) for x in _comma_list(text))


def _none_or_str(text: str) -> str | None:
    return None if text == "none" else text


@dataclass
class PipelineConfig:
    """What `convert_code_dataset.py` does; every option of that command is a field here, with its default."""

    inputs: list[str] = field(
        metadata=cli(
            "folders, .jsonl(.gz)/.parquet files, saved datasets or hub ids",
            group=IO,
            flag="--input",
            required=True,
            nargs="+",
        )
    )
    out: str = field(
        metadata=cli("output folder, or a remote URI (s3://, gs://, oci://, ...)", group=IO, required=True)
    )
    tokenizer: str = field(
        metadata=cli("tokenizer folder, hub id or SentencePiece .model file", group=IO, required=True)
    )
    data_dir: str | None = field(
        default=None, metadata=cli("data_dir for hub datasets (e.g. data/python)", group=IO)
    )
    split: str = field(default="train", metadata=cli("split of hub / saved datasets", group=IO))
    overwrite: bool = field(default=False, metadata=cli("replace an existing, non-empty --out", group=IO))
    max_seq_len: int = field(default=2048, metadata=cli("tokens per packed sample", group=PACK))
    sequence_id: bool = field(
        default=False, metadata=cli("also write a per-token document index (sequence_id)", group=PACK)
    )
    val_fraction: float = field(
        default=0.01, metadata=cli("share of documents for val/, by content hash", group=PACK)
    )
    seed: int = field(default=0, metadata=cli("seed of the mixture subsampling", group=PACK))
    workers: int = field(default=2, metadata=cli("worker processes; 0 runs in-process", group=PACK))
    # level 1: ~7x faster than zstd's default 3, ~5% larger shards
    compression: str | None = field(
        default="zstd:1",
        metadata=cli(
            "MDS shard compression (zstd:LEVEL, gz, br, ...) or 'none'", group=PACK, parse=_none_or_str
        ),
    )
    shard_size: str = field(default="64mb", metadata=cli("MDS shard size limit", group=PACK))
    languages: tuple[str, ...] | None = field(  # None: keep every language, known or not
        default=REPLIT_LANGUAGES,
        metadata=cli(
            "comma-separated allowlist, or 'all'",
            group=SELECT,
            parse=_languages,
            show=lambda v: "replit's 20",
        ),
    )
    mixture: dict[str, float] = field(  # language -> weight (>1 repeats, <1 subsamples)
        default_factory=dict,
        metadata=cli("per-language weights, e.g. Python=2,Markdown=0.5", group=SELECT, parse=parse_mixture),
    )
    licenses: tuple[str, ...] | None = field(  # None: no license filter (--no-license-filter)
        default=PERMISSIVE_LICENSES,
        metadata=cli(
            "license allowlist where records have 'licenses'",
            group=SELECT,
            parse=_comma_list,
            show=lambda v: "permissive",
        ),
    )
    quality: QualityFilter = field(default_factory=QualityFilter)
    max_bytes: int = field(default=1_000_000, metadata=cli("drop files larger than this", group=QUALITY))
    exact_dedup: bool = field(
        default=True,
        metadata=cli("keep files whose content repeats exactly", group=DEDUP, flag="--no-exact-dedup"),
    )
    near_dedup: bool = field(
        default=True,
        metadata=cli("skip MinHash near-duplicate removal (faster)", group=DEDUP, flag="--no-near-dedup"),
    )
    near_dedup_threshold: float = field(
        default=0.7, metadata=cli("MinHash LSH Jaccard threshold", group=DEDUP)
    )
    num_perm: int = 128
    shingle: int = 5
    decontaminate: bool = field(
        default=True,
        metadata=cli("keep files that overlap HumanEval", group=DEDUP, flag="--no-decontaminate"),
    )
    decontaminate_with: list[str] = field(
        default_factory=list,
        metadata=cli("more benchmark JSONL(.gz) files to decontaminate against", group=DEDUP, nargs="*"),
    )
    decontam_ngram: int = field(default=20, metadata=cli("n-gram length in tokens", group=DEDUP))
    progress: bool = field(default=True, metadata=cli("no progress bar", flag="--quiet"))
    engine: str = field(
        default="local",
        metadata=cli("local: this machine's cores; spark: Spark jobs (docs/data.md)", group=ENGINE),
    )
    spark_master: str | None = field(
        default=None,
        metadata=cli(
            "Spark master URL (local[4], spark://host:7077, yarn); default: spark-submit's, else local[*]",
            group=ENGINE,
        ),
    )
    spark_partitions: int | None = field(
        default=None,
        metadata=cli(
            "Spark tasks per stage (default: the cluster's default parallelism)", group=ENGINE, parse=int
        ),
    )

    def validate(self) -> None:
        def bad(option: str, problem: str) -> None:
            raise ValueError(f"{option}: {problem}")

        if not self.inputs:
            bad("--input", "give at least one input")
        if self.max_seq_len <= 0:
            bad("--max-seq-len", f"must be positive, got {self.max_seq_len}")
        if self.workers < 0:
            bad("--workers", f"must be >= 0, got {self.workers}")
        if not 0 <= self.val_fraction < 1:
            bad("--val-fraction", f"must be in [0, 1), got {self.val_fraction}")
        if not 0 < self.near_dedup_threshold <= 1:
            bad("--near-dedup-threshold", f"must be in (0, 1], got {self.near_dedup_threshold}")
        if self.engine not in ENGINES:
            bad("--engine", f"must be one of {', '.join(ENGINES)}, got {self.engine!r}")
        if self.engine != "spark" and (self.spark_master is not None or self.spark_partitions is not None):
            bad("--spark-master/--spark-partitions", "apply to --engine spark only")
        if self.spark_partitions is not None and self.spark_partitions < 1:
            bad("--spark-partitions", f"must be >= 1, got {self.spark_partitions}")
        if self.max_bytes <= 0:
            bad("--max-bytes", f"must be positive, got {self.max_bytes}")
        for lang, weight in self.mixture.items():
            if weight < 0:
                bad("--mixture", f"weight of {lang} must be >= 0, got {weight}")
            if self.languages is not None and lang not in self.languages:
                bad("--mixture", f"{lang} is not among the kept languages {list(self.languages)}")


@dataclass
class Batch:
    """A batch of documents after the worker, column by column: a few objects cross the process boundary,
    not one (and an array) per document.

    `tokens` holds the kept documents' ids one after another, each followed by EOS; `lengths[i]` is
    document i's share of it (0 when the worker dropped it)."""

    sources: list[str] = field(default_factory=list)
    langs: list[str] = field(default_factory=list)
    drops: list[str | None] = field(default_factory=list)
    details: list[str] = field(default_factory=list)
    n_bytes: list[int] = field(default_factory=list)
    digests: list[bytes] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    signatures: list[Any] = field(default_factory=list)  # LSH band keys per document (near-dedup)
    tokens: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.uint32))

    def append(self, source: str, lang: str | None, drop: str | None = None, detail: str = "") -> int:
        self.sources.append(source)
        self.langs.append(lang or "unknown")
        self.drops.append(drop)
        self.details.append(detail)
        self.n_bytes.append(0)
        self.digests.append(b"")
        self.lengths.append(0)
        self.signatures.append(None)
        return len(self.sources) - 1

    def __len__(self) -> int:
        return len(self.sources)


# -- the worker side --------------------------------------------------------------------------------------
_WORKER: dict[str, Any] = {}


def init_worker(config: PipelineConfig, encoder: TokenEncoder, benchmark: BenchmarkIndex | None) -> None:
    _WORKER.update(config=config, encoder=encoder, benchmark=benchmark)
    _WORKER["allowlist"] = frozenset(config.licenses) if config.licenses is not None else None
    _WORKER["languages"] = frozenset(config.languages or ())


def process_batch(docs: list[RawDoc]) -> Batch:
    """Everything per document that needs no global state (runs in a worker)."""
    config: PipelineConfig = _WORKER["config"]
    encoder: TokenEncoder = _WORKER["encoder"]
    batch = Batch()
    screened = []  # (index in the batch, data as read, content) of documents the per-document filters keep
    for doc in docs:
        if doc.deferred and config.languages is not None and doc.lang not in _WORKER["languages"]:
            batch.append(doc.source, doc.lang, "language")
            continue  # not worth reading
        doc = load(doc, config.max_bytes)
        content, drop = (None, doc.drop) if doc.drop else _screen(doc, config)
        i = batch.append(doc.source, doc.lang, drop, doc.detail)
        if content is not None:
            screened.append((i, doc.data, content))
    verdicts = config.quality.check_many([content for _, _, content in screened])
    kept, contents = [], []
    for (i, data, content), drop in zip(screened, verdicts, strict=True):
        if drop:
            batch.drops[i] = drop
            continue
        raw = data if isinstance(data, bytes) else content.encode("utf-8", "surrogatepass")
        batch.n_bytes[i] = len(raw)
        batch.digests[i] = content_digest(raw)  # valid UTF-8 bytes are the text's encoding: hashed as read
        kept.append(i)
        contents.append(content)
    threads = 1 if config.workers else -1  # one thread per worker process, or all cores in-process
    arrays = encoder.encode_arrays(contents, num_threads=threads) if contents else []
    benchmark: BenchmarkIndex | None = _WORKER["benchmark"]
    contaminated = benchmark.contaminated_many(arrays) if benchmark is not None else [False] * len(arrays)
    eos = np.array([encoder.eos_id], dtype=np.uint32)
    pieces, tokenized = [], []
    for i, tokens, leaked in zip(kept, arrays, contaminated, strict=True):
        if leaked:
            batch.drops[i] = "contaminated"
            continue
        pieces += [tokens, eos]
        batch.lengths[i] = len(tokens) + 1
        tokenized.append((i, tokens))
    if config.near_dedup and tokenized:
        signatures = minhash_signatures([tokens for _, tokens in tokenized], config.num_perm, config.shingle)
        keys = band_keys(signatures, *lsh_bands(config.near_dedup_threshold, config.num_perm))
        for (i, _), row in zip(tokenized, keys, strict=True):
            batch.signatures[i] = row
    if pieces:
        batch.tokens = np.concatenate(pieces)
    return batch


def _screen(doc: RawDoc, config: PipelineConfig) -> tuple[str | bytes | None, str | None]:
    """The document's content if the per-document filters keep it (a file's bytes as read when they are
    ASCII, which the filters and the tokenizer take as they are: no decoding), else a drop reason. The
    quality filters run afterwards over the whole batch at once."""
    if config.languages is not None and doc.lang not in _WORKER["languages"]:
        return None, "language"
    if doc.licenses is not None and not license_allowed(doc.licenses, _WORKER["allowlist"]):
        return None, "license"
    data = doc.data
    if isinstance(data, bytes) and len(data) > config.max_bytes:
        return None, "too_large"
    content, reason = decode(data, ascii_as_bytes=True)
    if reason:
        return None, reason
    if is_blank(content):
        return None, "empty"
    if len(content) > config.max_bytes:
        return None, "too_large"
    return content, None


# -- the main side -----------------------------------------------------------------------------------------
class Packer:
    """Concatenates documents (each ending in its EOS) into fixed-length samples, with per-sample document ids.

    Documents are collected and cut into samples in blocks (one concatenation per block rather than numpy
    work per document). `sequence_id` numbers the documents within each sample from 0; a document cut by a
    sample boundary continues as document 0 of the next sample.
    """

    BLOCK_SAMPLES = 64

    def __init__(self, writer: ShardWriter, max_seq_len: int, with_sequence_id: bool) -> None:
        self.writer, self.max_seq_len, self.with_sequence_id = writer, max_seq_len, with_sequence_id
        self.pending: list[np.ndarray] = []  # token arrays, EOS included
        self.pending_lengths: list[int] = []  # tokens per pending document (the first may be a remainder)
        self.pending_languages: list[str] = []  # language per pending document
        self.pending_tokens = 0
        self.samples = self.documents = 0

    def add(self, tokens: np.ndarray, language: str = "") -> None:
        """One document's ids, its EOS included."""
        self.pending.append(tokens)
        self.pending_lengths.append(len(tokens))
        self.pending_languages.append(language)
        self.pending_tokens += len(tokens)
        self.documents += 1
        if self.pending_tokens >= self.BLOCK_SAMPLES * self.max_seq_len:
            self._flush()

    def _flush(self) -> None:
        stream = np.concatenate(self.pending)
        doc = np.repeat(np.arange(len(self.pending_lengths)), self.pending_lengths)
        full = len(stream) // self.max_seq_len
        columns = {"tokens": stream[: full * self.max_seq_len].reshape(full, self.max_seq_len)}
        if self.with_sequence_id:
            ids = doc[: full * self.max_seq_len].reshape(full, self.max_seq_len)
            columns["sequence_id"] = (ids - ids[:, :1]).astype(np.uint16)
            # the language of each document in a sample, in sequence_id order (for per-language metrics)
            columns["doc_languages"] = [",".join(self.pending_languages[row[0] : row[-1] + 1]) for row in ids]
        self.writer.write_rows(**columns)
        self.samples += full
        rest, rest_doc = stream[full * self.max_seq_len :], doc[full * self.max_seq_len :]
        self.pending = [rest] if len(rest) else []
        self.pending_lengths = np.unique(rest_doc, return_counts=True)[1].tolist() if len(rest) else []
        self.pending_languages = self.pending_languages[rest_doc[0] :] if len(rest) else []
        self.pending_tokens = len(rest)

    def finish(self) -> int:
        """Write what fills whole samples and close the writer; returns the tokens left over (not written)."""
        if self.pending:
            self._flush()
        self.writer.finish()
        return self.pending_tokens


def _batches(docs: Iterable[RawDoc]) -> Iterator[list[RawDoc]]:
    batch: list[RawDoc] = []
    size = 0
    for doc in docs:
        batch.append(doc)
        size += len(doc.data) if doc.data is not None else 0
        if len(batch) >= BATCH_DOCS or size >= BATCH_BYTES:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def split_of(digest: bytes, val_fraction: float) -> str:
    return "val" if int.from_bytes(digest[8:16], "little") / 2**64 < val_fraction else "train"


def copies_of(digest: bytes, weight: float, seed: int) -> int:
    """How many times a document enters the mix: floor(weight), plus one more with probability frac(weight)."""
    u = ((int.from_bytes(digest[:8], "little") ^ (seed * 0x9E3779B97F4A7C15)) % 2**64) / 2**64
    whole = int(weight)
    return whole + (1 if u < weight - whole else 0)


@dataclass
class Stats:
    languages: dict[str, dict[str, int]] = field(
        default_factory=lambda: collections.defaultdict(lambda: {"files": 0, "bytes": 0, "tokens": 0})
    )
    dropped: collections.Counter = field(default_factory=collections.Counter)
    examples: dict[str, str] = field(default_factory=dict)  # one source per drop reason, for the report
    splits: dict[str, dict[str, int]] = field(default_factory=dict)
    files_seen: int = 0
    repeated: int = 0

    def drop(self, reason: str, source: str, detail: str = "") -> None:
        self.dropped[reason] += 1
        self.examples.setdefault(reason, f"{source} {detail}".strip())

    def as_dict(self) -> dict[str, Any]:
        return {
            "files_seen": self.files_seen,
            "languages": {k: dict(v) for k, v in sorted(self.languages.items())},
            "dropped": dict(sorted(self.dropped.items())),
            "drop_examples": dict(sorted(self.examples.items())),
            "repeated_by_mixture": self.repeated,
            "splits": self.splits,
        }


def run(config: PipelineConfig) -> dict[str, Any]:
    """Run the whole pipeline; returns the stats also written to <out>/stats.json."""
    config.validate()
    start = time.perf_counter()
    encoder = TokenEncoder(config.tokenizer)
    benchmark = benchmark_index(config, encoder)
    remote = is_remote(config.out)
    final = Path(tempfile.mkdtemp(prefix="replitlm-prep-")) / "out" if remote else Path(config.out)
    staging = open_staging(final, config.overwrite)

    stats = Stats()
    packers = Packers(staging, config)
    dedup = Deduplicator(config.exact_dedup, config.near_dedup)
    docs = iter_inputs(config.inputs, config.data_dir, config.split)
    try:
        _write_shards(config, docs, encoder, benchmark, stats, dedup, packers)
    except BaseException:
        for packer in packers.values():
            packer.writer.abandon()  # its background thread may be writing a shard into staging
        shutil.rmtree(staging, ignore_errors=True)  # a rerun starts over anyway; free the disk now
        raise
    for split in ("train", "val"):
        packer = packers.get(split)
        remainder = packer.finish() if packer is not None else 0
        samples = packer.samples if packer is not None else 0
        stats.splits[split] = {
            "samples": samples,
            "tokens": samples * config.max_seq_len,
            "documents": packer.documents if packer is not None else 0,
            "remainder_tokens_dropped": remainder,
        }
        if not samples:  # streaming cannot open a dataset without samples: leave no empty split
            shutil.rmtree(staging / split, ignore_errors=True)
    report = stats.as_dict()
    report["seconds"] = round(time.perf_counter() - start, 2)
    report["config"] = config_record(config)
    publish(staging, final, report)
    if remote:
        _upload(final, config.out)
        shutil.rmtree(final.parent)
    return report


def _consume(
    batch: Batch, config: PipelineConfig, stats: Stats, dedup: Deduplicator, packers: dict[str, Packer]
) -> None:
    """Dedup, mixture weights and the train/val split for each document in input order; pack the kept."""
    end = 0
    for i, source in enumerate(batch.sources):
        start, end = end, end + batch.lengths[i]
        stats.files_seen += 1
        if batch.drops[i]:
            stats.drop(batch.drops[i], source, batch.details[i])
            continue
        digest = batch.digests[i]
        if reason := dedup.check(digest, batch.signatures[i]):
            stats.drop(reason, source)
            continue
        lang = batch.langs[i]
        copies = copies_of(digest, config.mixture.get(lang, 1.0), config.seed)
        if copies == 0:
            stats.drop("subsampled", source)
            continue
        stats.repeated += copies - 1
        row = stats.languages[lang]
        row["files"] += 1
        row["bytes"] += batch.n_bytes[i]
        row["tokens"] += end - start
        packer = packers[split_of(digest, config.val_fraction)]
        for _ in range(copies):
            packer.add(batch.tokens[start:end], lang)


def _write_shards(
    config: PipelineConfig,
    docs: Iterator[RawDoc],
    encoder: TokenEncoder,
    benchmark: BenchmarkIndex | None,
    stats: Stats,
    dedup: Deduplicator,
    packers: dict[str, Packer],
) -> None:
    """Filter, tokenize and pack every input document into the staging shards, with a progress bar."""
    ctx = worker_context(preload=[__name__])
    with tqdm(desc="files", unit=" files", disable=not config.progress, mininterval=1.0) as bar:
        initargs = (config, encoder, benchmark)
        results = ordered_map(process_batch, _batches(docs), config.workers, init_worker, initargs, ctx)
        for batch in results:
            _consume(batch, config, stats, dedup, packers)
            bar.update(len(batch))


class Packers(dict):
    """The train and val packers, each made when its first document comes: making one imports streaming
    (~5 s here: it imports torch and transformers), which then overlaps the workers' first batches instead of
    delaying them, and the workers fork from a process that has not imported it."""

    def __init__(self, staging: Path, config: PipelineConfig) -> None:
        super().__init__()
        self.staging, self.config = staging, config

    def __missing__(self, split: str) -> Packer:
        packer = self[split] = make_packer(self.staging / split, self.config)
        return packer


def is_remote(out: str) -> bool:
    return "://" in out


def open_staging(final: Path, overwrite: bool) -> Path:
    """The empty folder beside `final` that a run writes into (an interrupted run's is redone from the
    start), once it is clear that `final` may be replaced."""
    if final.exists() and any(final.iterdir()) and not overwrite:
        raise FileExistsError(f"--out {final} exists and is not empty; pass --overwrite to replace it")
    staging = final.parent / f".{final.name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    return staging


def publish(staging: Path, final: Path, report: dict[str, Any]) -> None:
    """stats.json last, then the whole output in place by one rename."""
    write_json(staging / "stats.json", report)
    if final.exists():
        shutil.rmtree(final)
    os.replace(staging, final)


def make_packer(path: Path, config: PipelineConfig, remote: str | None = None) -> Packer:
    """A packer writing MDS shards into `path` (and uploading each to `remote`, when given)."""
    from replitlm.data.shards import ShardWriter, sample_columns  # streaming imports torch: the writer only

    writer = ShardWriter(
        out=(str(path), remote) if remote else str(path),
        columns=sample_columns(config.max_seq_len, config.sequence_id),
        compression=config.compression,
        size_limit=config.shard_size,
    )
    return Packer(writer, config.max_seq_len, config.sequence_id)


def benchmark_index(config: PipelineConfig, encoder: TokenEncoder) -> BenchmarkIndex | None:
    if not config.decontaminate:
        return None
    texts = read_benchmark_texts(humaneval_path())
    for path in config.decontaminate_with:
        texts.extend(read_benchmark_texts(path))
    return BenchmarkIndex(texts, encoder.encode, n=config.decontam_ngram)


def config_record(config: PipelineConfig) -> dict[str, Any]:
    record = asdict(config)
    record.pop("progress")
    return record


def write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=list) + "\n")
    os.replace(tmp, path)


def _upload(local: Path, remote: str) -> None:
    """Upload a finished output folder; each split's index.json goes last, so readers never see a partial set."""
    from streaming.base.storage import CloudUploader

    files = sorted(p for p in local.rglob("*") if p.is_file())
    files.sort(key=lambda p: p.name == "index.json")
    for path in files:
        folder = path.parent.relative_to(local)
        target = remote.rstrip("/") + ("" if folder == Path(".") else f"/{folder.as_posix()}")
        uploader = CloudUploader.get(out=(str(path.parent), target), keep_local=True, exist_ok=True)
        uploader.upload_file(path.name)


def format_report(report: dict[str, Any]) -> str:
    """The printed summary: per-language files/bytes/tokens, drops per reason, split sizes."""
    lines = [f"{'language':<20}{'files':>10}{'MB':>10}{'tokens':>14}"]
    for lang, row in report["languages"].items():
        lines.append(f"{lang:<20}{row['files']:>10,}{row['bytes'] / 1e6:>10.1f}{row['tokens']:>14,}")
    lines.append("")
    lines.append(f"{'dropped':<28}{'files':>10}   example")
    for reason, count in report["dropped"].items():
        lines.append(f"{reason:<28}{count:>10,}   {report['drop_examples'].get(reason, '')[:70]}")
    lines.append("")
    for split, row in report["splits"].items():
        if not row["samples"]:
            lines.append(f"{split}: no complete sample, not written")
            continue
        lines.append(
            f"{split}: {row['samples']:,} samples of {report['config']['max_seq_len']} tokens from "
            f"{row['documents']:,} documents ({row['remainder_tokens_dropped']:,} tokens left over, not written)"
        )
    lines.append(f"{report['files_seen']:,} files in {report['seconds']:.1f} s")
    return "\n".join(lines)
