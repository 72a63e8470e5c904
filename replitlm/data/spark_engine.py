"""The data-prep pipeline as Spark jobs, for corpora past one machine (`--engine spark`).

    driver: the inputs cut into units (256 files of a folder, a .jsonl file, a parquet row group, a slice
    of a saved dataset), each with an index  ->  read: each unit's documents by the local engine's readers,
    ordered by (unit, position), a 64-bit `order`  ->  process: the local engine's per-document work
    (`process_batch`: filters, content digest, tokens, decontamination, LSH band keys), unchanged
    ->  exact dedup: the first `order` of each digest  ->  near dedup: documents linked by a shared band
    key, clusters by connected components (min-label propagation in DataFrame joins), each cluster's first
    kept  ->  mixture copies and the train/val split by content hash (the local engine's functions)
    ->  pack: each split cut into parts of whole units in input order, each part packed and written as MDS
    by one task, joined by streaming's `merge_index`  ->  stats.json  ->  rename into place (or, for a
    remote --out, the merged index.json of each split written last).

What it keeps is what the local engine keeps, except that near-dedup's clusters can drop a little more: the
local engine's greedy pass keeps C in a chain A~B~C where it dropped B and C is not like A; components drop
it. With one part per split (small corpora) the shards hold the local engine's samples exactly; with more,
each part leaves its own remainder (< max_seq_len tokens) unwritten.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from replitlm.data.encoding import TokenEncoder
from replitlm.data.languages import language_of_path
from replitlm.data.pipeline import (
    BATCH_DOCS,
    Packer,
    PipelineConfig,
    Stats,
    benchmark_index,
    config_record,
    copies_of,
    init_worker,
    is_remote,
    make_packer,
    open_staging,
    process_batch,
    publish,
    split_of,
    write_json,
)
from replitlm.data.sources import (
    RawDoc,
    input_kind,
    iter_hub_dataset,
    iter_jsonl,
    iter_parquet,
    iter_saved_dataset,
    iter_tree,
    open_saved_dataset,
)

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import DataFrame, SparkSession

UNIT_FILES = 256  # files of a folder per unit (a task reads whole units)
UNIT_ROWS = 50_000  # rows of a saved dataset per unit
PART_SAMPLES = 32_768  # samples per packed part (~4 shards of 64 MB at 2048 tokens); each leaves a remainder
ORDER_BITS = 32  # order = unit << ORDER_BITS | position in the unit
WORKER_ERROR = "replitlm worker error: "  # marks our one-line message inside Spark's nested exceptions

log = logging.getLogger(__name__)


class Output(NamedTuple):
    """Where the parts go: a folder every executor sees (the staging folder), or a remote URI."""

    target: str
    remote: bool


class SparkJobError(RuntimeError):
    """A task failed on an executor; the message is one line naming the input it was working on."""


# -- units: the inputs cut into pieces that tasks read whole ------------------------------------------------
def list_units(config: PipelineConfig) -> list[tuple[int, str, str, int, int]]:
    """(unit, kind, where, start, stop) for every input, in input order (the order the local engine reads)."""
    units: list[tuple[int, str, str, int, int]] = []

    def add(kind: str, where: str, start: int = 0, stop: int = 0) -> None:
        units.append((len(units), kind, where, start, stop))

    for spec in config.inputs:
        kind, where = input_kind(spec)
        if kind == "tree":
            paths = [doc.source for doc in iter_tree(Path(where))]
            for at in range(0, len(paths), UNIT_FILES):
                add("files", json.dumps(paths[at : at + UNIT_FILES]))
        elif kind == "parquet":
            for group in range(_row_groups(where)):
                add("parquet", where, group)
        elif kind == "saved":
            rows = len(open_saved_dataset(Path(where), config.split))
            for at in range(0, rows, UNIT_ROWS):
                add("saved", where, at, min(at + UNIT_ROWS, rows))
        else:  # a .jsonl file or a hub dataset: read by one task (split big .jsonl files to read in parallel)
            add(kind, where)
    return units


def _row_groups(path: str) -> int:
    import pyarrow.parquet as pq

    try:
        return max(pq.ParquetFile(path).metadata.num_row_groups, 1)
    except Exception:  # unreadable: one unit, whose reader reports it as the local engine does
        return 1


def unit_docs(kind: str, where: str, start: int, stop: int, config: PipelineConfig) -> Iterator[RawDoc]:
    """The unit's documents, by the local engine's readers."""
    if kind == "files":
        for path in json.loads(where):
            yield RawDoc(path, None, language_of_path(path), deferred=True)
    elif kind == "parquet":
        yield from iter_parquet(Path(where), row_group=start)
    elif kind == "saved":
        yield from iter_saved_dataset(Path(where), config.split, range(start, stop))
    elif kind == "jsonl":
        yield from iter_jsonl(Path(where))
    else:
        yield from iter_hub_dataset(where, config.data_dir, config.split)


# -- what runs on the executors ----------------------------------------------------------------------------
DOC_SCHEMA = (
    "order long, source string, lang string, text string, data binary, licenses array<string>, "
    "drop string, detail string, deferred boolean"
)
PROCESSED_SCHEMA = (
    "order long, source string, lang string, drop string, detail string, n_bytes long, digest binary, "
    "tokens binary, keys array<long>, copies int, split string"
)
PACKED_SCHEMA = "split string, part int, samples long, documents long, remainder long, folder string"


@contextmanager
def reporting(what: str) -> Iterator[None]:
    """An exception in a task becomes one line naming what the task was working on (the driver finds it in
    Spark's nested error by WORKER_ERROR)."""
    try:
        yield
    except Exception as e:
        raise worker_error(what, e) from e


def worker_error(what: str, e: Exception) -> RuntimeError:
    return RuntimeError(f"{WORKER_ERROR}{what}: {type(e).__name__}: {e}".replace("\n", " "))


def read_units(batches: Iterator[pa.RecordBatch], config: PipelineConfig) -> Iterator[pa.RecordBatch]:
    import pyarrow as pa

    for batch in batches:
        for unit in batch.to_pylist():
            rows: list[dict[str, Any]] = []
            described = (
                unit["where"] if unit["kind"] != "files" else f"the files from {json.loads(unit['where'])[0]}"
            )
            with reporting(f"reading {described}"):
                docs = unit_docs(unit["kind"], unit["where"], unit["start"], unit["stop"], config)
                for position, doc in enumerate(docs):
                    text = doc.data if isinstance(doc.data, str) else None
                    data = doc.data if isinstance(doc.data, bytes) else None
                    rows.append(
                        {
                            "order": unit["unit"] << ORDER_BITS | position,
                            "source": doc.source,
                            "lang": doc.lang,
                            "text": text,
                            "data": data,
                            "licenses": doc.licenses,
                            "drop": doc.drop,
                            "detail": doc.detail,
                            "deferred": doc.deferred,
                        }
                    )
                    if len(rows) == BATCH_DOCS:
                        yield pa.RecordBatch.from_pylist(rows, schema=_arrow_schema(DOC_SCHEMA))
                        rows = []
            if rows:
                yield pa.RecordBatch.from_pylist(rows, schema=_arrow_schema(DOC_SCHEMA))


@dataclasses.dataclass(frozen=True)
class WorkerSetup:
    """What the processing tasks of one run need (pickled into each task; the benchmark index broadcast)."""

    job: str  # unique per run: Spark reuses its Python workers across tasks and across runs of a session
    config: PipelineConfig
    tokenizer: str  # the path on the driver; executors that do not see it take the copy SparkFiles shipped
    benchmark: Any  # Broadcast of the BenchmarkIndex, or None


def process_docs(batches: Iterator[pa.RecordBatch], setup: WorkerSetup) -> Iterator[pa.RecordBatch]:
    """`process_batch` of the local engine on each batch of documents (the worker set up once per process)."""
    import pyarrow as pa

    _set_up_worker(setup)
    config = setup.config
    for arrow in batches:
        records = arrow.to_pylist()
        docs = [
            RawDoc(
                r["source"],
                r["text"] if r["text"] is not None else r["data"],
                r["lang"],
                r["licenses"],
                r["drop"],
                r["detail"] or "",
                r["deferred"],
            )
            for r in records
        ]
        with reporting(
            f"processing {docs[0].source if docs else 'an empty batch'} and the next {len(docs) - 1}"
        ):
            batch = process_batch(docs)
        ends = np.cumsum(batch.lengths)
        rows = []
        for i, record in enumerate(records):
            keys, digest, lang = batch.signatures[i], batch.digests[i], batch.langs[i]
            kept = batch.drops[i] is None
            rows.append(
                {
                    "order": record["order"],
                    "source": batch.sources[i],
                    "lang": batch.langs[i],
                    "drop": batch.drops[i],
                    "detail": batch.details[i],
                    "n_bytes": batch.n_bytes[i],
                    "digest": batch.digests[i],
                    "tokens": batch.tokens[ends[i] - batch.lengths[i] : ends[i]].tobytes(),
                    "keys": None if keys is None else keys.view(np.int64).tolist(),
                    # the mixture and the split, functions of the content (used if dedup keeps it)
                    "copies": copies_of(digest, config.mixture.get(lang, 1.0), config.seed) if kept else 0,
                    "split": split_of(digest, config.val_fraction) if kept else None,
                }
            )
        yield pa.RecordBatch.from_pylist(rows, schema=_arrow_schema(PROCESSED_SCHEMA))


_set_up_for: str | None = None  # the run this Python worker process is set up for (Spark reuses workers)


def _set_up_worker(setup: WorkerSetup) -> None:
    """init_worker once per Python worker process and run."""
    global _set_up_for
    if _set_up_for == setup.job:
        return
    with reporting(f"loading the tokenizer {setup.tokenizer}"):
        encoder = TokenEncoder(_shipped(setup.tokenizer))
    benchmark = setup.benchmark.value if setup.benchmark is not None else None
    init_worker(setup.config, encoder, benchmark)
    _set_up_for = setup.job
    _import_in_background("replitlm.data.shards")


def _import_in_background(module: str) -> None:
    """Start importing a module the next stage needs: the shard writer's streaming imports torch and
    transformers (~4 s), which then overlaps this stage's work instead of delaying the next (Spark reuses
    its Python workers, and the driver's process is the same all along)."""
    if module not in sys.modules:
        threading.Thread(target=importlib.import_module, args=(module,), daemon=True).start()


def _shipped(path: str) -> str:
    """The tokenizer the driver shipped with SparkContext.addFile, as this executor sees it."""
    if os.path.exists(path):  # local mode, or a path every node shares
        return path
    from pyspark import SparkFiles

    return SparkFiles.get(Path(path).name)


def pack_parts(
    batches: Iterator[pa.RecordBatch], config: PipelineConfig, output: Output
) -> Iterator[pa.RecordBatch]:
    """Pack each (split, part) run of the sorted partition into its own MDS folder, in input order."""
    import pyarrow as pa

    current: tuple[str, int] | None = None
    packer: Packer | None = None
    summaries: list[dict[str, Any]] = []

    def finish() -> None:
        if packer is not None and current is not None:
            remainder = packer.finish()
            split, part = current
            summaries.append(
                {
                    "split": split,
                    "part": part,
                    "samples": packer.samples,
                    "documents": packer.documents,
                    "remainder": remainder,
                    "folder": _part_name(part),
                }
            )

    try:  # one handler for the whole loop: it runs once per document
        for arrow in batches:
            for row in arrow.to_pylist():
                if (row["split"], row["part"]) != current:
                    finish()
                    current = (row["split"], row["part"])
                    packer = _packer_for(output, current, config)
                tokens = np.frombuffer(row["tokens"], dtype=np.uint32)
                for _ in range(row["copies"]):
                    packer.add(tokens, row["lang"])
        finish()
    except Exception as e:
        where = f"writing part {current[1]} of {current[0]}" if current else "packing"
        raise worker_error(where, e) from e
    if summaries:
        yield pa.RecordBatch.from_pylist(summaries, schema=_arrow_schema(PACKED_SCHEMA))


def _part_name(part: int) -> str:
    return f"part-{part:05d}"


def _packer_for(output: Output, split_part: tuple[str, int], config: PipelineConfig) -> Packer:
    """A packer writing into <target>/<split>/part-NNNNN: straight there for a folder every executor sees,
    through an executor-local folder for a remote URI. A retried task starts its part afresh."""
    split, part = split_part
    if output.remote:
        local = Path(tempfile.mkdtemp(prefix="replitlm-part-")) / _part_name(part)
        return make_packer(local, config, remote=f"{output.target}/{split}/{_part_name(part)}")
    folder = Path(output.target) / split / _part_name(part)
    shutil.rmtree(folder, ignore_errors=True)
    return make_packer(folder, config)


_ARROW_SCHEMAS: dict[str, Any] = {}


def _arrow_schema(ddl: str) -> pa.Schema:
    """The arrow schema of a Spark DDL string (of the few types used here)."""
    import pyarrow as pa

    if ddl not in _ARROW_SCHEMAS:
        types = {
            "long": pa.int64(),
            "int": pa.int32(),
            "string": pa.string(),
            "binary": pa.binary(),
            "boolean": pa.bool_(),
            "array<string>": pa.list_(pa.string()),
            "array<long>": pa.list_(pa.int64()),
        }
        fields = [part.strip().split(" ", 1) for part in ddl.split(", ")]
        _ARROW_SCHEMAS[ddl] = pa.schema([(name, types[kind]) for name, kind in fields])
    return _ARROW_SCHEMAS[ddl]


# -- the driver ----------------------------------------------------------------------------------------------
def run_spark(config: PipelineConfig) -> dict[str, Any]:
    """Run the whole pipeline as Spark jobs; returns the stats also written to <out>/stats.json."""
    config.validate()
    start = time.perf_counter()
    encoder = TokenEncoder(config.tokenizer)  # a bad --tokenizer fails here, before any job
    benchmark = benchmark_index(config, encoder)
    remote = is_remote(config.out)
    final = Path(config.out)
    staging = None if remote else open_staging(final, config.overwrite)
    target = config.out.rstrip("/") if remote else str(staging.resolve())
    units = list_units(config)
    _import_in_background("streaming")  # merge_index, at the end
    spark, ours = spark_session(config)
    try:
        with worker_errors(), _quiet("streaming", ""):  # "": the root logger
            setup = WorkerSetup(
                job=f"{os.getpid()}-{time.time_ns()}",
                config=dataclasses.replace(config, workers=1, progress=False),  # one thread per task
                tokenizer=_ship_tokenizer(spark, encoder, config.tokenizer),
                benchmark=spark.sparkContext.broadcast(benchmark) if benchmark is not None else None,
            )
            report = _run_jobs(spark, config, units, Output(target, remote), setup)
    except BaseException:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)  # a rerun starts over anyway; free the disk now
        raise
    finally:
        if ours:
            spark.stop()
    report["seconds"] = round(time.perf_counter() - start, 2)
    report["config"] = config_record(config)
    if staging is None:
        _upload_stats(report, config.out)
    else:
        publish(staging, final, report)
    return report


def spark_session(config: PipelineConfig) -> tuple[SparkSession, bool]:
    """The running session (spark-submit's, or a caller's), else a new one; True when it is ours to stop."""
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise ValueError("--engine spark needs pyspark: pip install 'replitlm[spark]'") from None
    active = SparkSession.getActiveSession()
    if active is not None:
        return active, False
    master = config.spark_master
    if master is None and "PYSPARK_GATEWAY_PORT" not in os.environ:  # not under spark-submit
        master = "local[*]"
    builder = SparkSession.builder.appName("replitlm-prep")
    if master:
        builder = builder.master(master)
    local = bool(master and master.startswith("local"))
    if local:
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # the workers run this environment's Python
    builder = builder.config("spark.ui.showConsoleProgress", str(config.progress).lower())
    spark = builder.getOrCreate()
    # On one machine the driver's one-line error says what failed; a cluster's operators read the logs.
    spark.sparkContext.setLogLevel("FATAL" if local else "WARN")
    return spark, True


def _ship_tokenizer(spark: SparkSession, encoder: TokenEncoder, spec: str) -> str:
    """Send the tokenizer to every executor (SparkFiles); returns its path on the driver."""
    path = Path(spec)
    if not path.exists():  # a hub id: ship what the driver loaded, so executors need no hub access
        folder = Path(tempfile.mkdtemp(prefix="replitlm-tokenizer-"))
        if encoder.sp is not None:
            path = folder / "spiece.model"
            path.write_bytes(encoder.sp.serialized_model_proto())
        else:
            path = folder / "tokenizer"
            encoder.hf.save_pretrained(path)
    path = path.resolve()
    spark.sparkContext.addFile(str(path), recursive=path.is_dir())
    return str(path)


def _run_jobs(
    spark: SparkSession, config: PipelineConfig, units: list[tuple], output: Output, setup: WorkerSetup
) -> dict[str, Any]:
    import functools

    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", str(BATCH_DOCS))
    partitions = config.spark_partitions or spark.sparkContext.defaultParallelism
    if config.spark_partitions is not None:  # the joins' and aggregations' tasks too
        spark.conf.set("spark.sql.shuffle.partitions", str(partitions))
    stats = Stats()
    unit_df = spark.createDataFrame(units, "unit long, kind string, where string, start long, stop long")
    docs = unit_df.repartition(min(len(units), partitions) or 1).mapInArrow(
        functools.partial(read_units, config=setup.config), DOC_SCHEMA
    )
    processed = (
        docs.repartition(partitions)
        .mapInArrow(functools.partial(process_docs, setup=setup), PROCESSED_SCHEMA)
        .persist(StorageLevel.MEMORY_AND_DISK)
    )
    try:
        stats.files_seen = processed.count()
        kept, duplicates = deduplicate(processed, config)
        survivors = processed.join(kept, "order")
        final = survivors.where(F.col("copies") > 0)
        subsampled = survivors.where(F.col("copies") == 0)
        _count_drops(stats, processed, duplicates, subsampled)
        _count_languages(stats, final)
        stats.splits = pack(spark, final, config, output)
    finally:
        processed.unpersist()
    return stats.as_dict()


def deduplicate(processed: DataFrame, config: PipelineConfig) -> tuple[DataFrame, DataFrame]:
    """(orders kept, (order, reason) of the duplicates dropped) among the documents the filters kept."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    kept = processed.where(F.col("drop").isNull()).select("order", "digest", "keys")
    dropped = []
    if config.exact_dedup:  # the first of each content, in input order
        kept = kept.withColumn("first", F.min("order").over(Window.partitionBy("digest")))
        dropped.append(kept.where(F.col("order") != F.col("first")).select("order", F.lit("exact_duplicate")))
        kept = kept.where(F.col("order") == F.col("first")).drop("first")
    if config.near_dedup:
        near = near_duplicates(kept.where(F.col("keys").isNotNull()).select("order", "keys"))
        dropped.append(near.select("order", F.lit("near_duplicate")))
        kept = kept.join(near, "order", "left_anti")
    schema = "order long, reason string"
    duplicates = processed.sparkSession.createDataFrame([], schema)
    for part in dropped:
        duplicates = duplicates.union(part.toDF("order", "reason"))
    return kept.select("order"), duplicates


def near_duplicates(docs: DataFrame) -> DataFrame:
    """The `order` of every document that shares an LSH band key, directly or through others, with an
    earlier one: connected components of the band-key graph, each labelled by its smallest `order`.

    Each round, a bucket (documents sharing a key) takes its members' smallest label and each document the
    smallest of its buckets'; labels only fall, so the rounds end (after about the components' diameter,
    a few rounds on real code). What a round holds is one row per (key, document) of the shared keys."""
    from pyspark.sql import functions as F

    members = docs.select("order", F.explode("keys").alias("key"))
    shared = members.groupBy("key").agg(F.count("*").alias("n")).where(F.col("n") > 1).select("key")
    members = members.join(shared, "key").select("key", "order").localCheckpoint()
    labels = members.select("order").distinct().withColumn("label", F.col("order"))
    while True:
        bucket = members.join(labels, "order").groupBy("key").agg(F.min("label").alias("label"))
        fresh = members.join(bucket, "key").groupBy("order").agg(F.min("label").alias("label"))
        fresh = fresh.localCheckpoint()
        changed = fresh.join(labels.withColumnRenamed("label", "old"), "order").where("label != old").count()
        labels = fresh
        if changed == 0:
            return labels.where(F.col("label") != F.col("order")).select("order")


def _count_drops(stats: Stats, processed: DataFrame, duplicates: DataFrame, subsampled: DataFrame) -> None:
    """Drops per reason, with the first dropped document in input order as the example (as the local engine)."""
    from pyspark.sql import functions as F

    filtered = processed.where(F.col("drop").isNotNull()).select(
        "order", F.col("drop").alias("reason"), "source", "detail"
    )
    deduped = duplicates.join(processed.select("order", "source"), "order").select(
        "order", "reason", "source", F.lit("").alias("detail")
    )
    fewer = subsampled.select(
        "order", F.lit("subsampled").alias("reason"), "source", F.lit("").alias("detail")
    )
    rows = (
        filtered.unionByName(deduped)
        .unionByName(fewer)
        .groupBy("reason")
        .agg(F.count("*").alias("n"), F.min_by(F.struct("source", "detail"), "order").alias("first"))
        .collect()
    )
    for row in rows:
        stats.dropped[row["reason"]] = row["n"]
        stats.examples[row["reason"]] = f"{row['first']['source']} {row['first']['detail'] or ''}".strip()


def _count_languages(stats: Stats, final: DataFrame) -> None:
    from pyspark.sql import functions as F

    rows = (
        final.groupBy("lang")
        .agg(
            F.count("*").alias("files"),
            F.sum("n_bytes").alias("bytes"),
            F.sum(F.length("tokens") / 4).alias("tokens"),
            F.sum(F.col("copies") - 1).alias("repeated"),
        )
        .collect()
    )
    for row in rows:
        stats.languages[row["lang"]] = {
            "files": row["files"],
            "bytes": row["bytes"],
            "tokens": int(row["tokens"]),
        }
        stats.repeated += row["repeated"]


def pack(
    spark: SparkSession, final: DataFrame, config: PipelineConfig, output: Output
) -> dict[str, dict[str, int]]:
    """Pack each split in parts of whole units (input order inside each), one MDS folder per part, merged."""
    import functools

    from pyspark.sql import functions as F

    unit = F.shiftright("order", ORDER_BITS).alias("unit")
    sizes = (
        final.groupBy("split", unit)
        .agg(F.sum(F.length("tokens") / 4 * F.col("copies")).alias("tokens"))
        .collect()
    )
    parts = assign_parts([(r["split"], r["unit"], int(r["tokens"])) for r in sizes], config.max_seq_len)
    part_df = spark.createDataFrame(parts, "split string, unit long, part int")
    count = len({(split, part) for split, _, part in parts}) or 1
    packed = (
        final.select("split", unit, "order", "lang", "copies", "tokens")
        .join(F.broadcast(part_df), ["split", "unit"])
        .repartition(count, "split", "part")
        .sortWithinPartitions("split", "part", "order")
        .select("split", "part", "order", "lang", "copies", "tokens")
        .mapInArrow(functools.partial(pack_parts, config=config, output=output), PACKED_SCHEMA)
        .collect()
    )
    return {
        split: _merge_split(output, split, [r for r in packed if r["split"] == split], config)
        for split in ("train", "val")
    }


def assign_parts(sizes: list[tuple[str, int, int]], max_seq_len: int) -> list[tuple[str, int, int]]:
    """(split, unit, part): each split's units, in input order, cut into parts of about PART_SAMPLES samples
    (whole units: a part never splits one). Sizes alone decide, not the cluster: the same input gives the
    same parts, hence the same bytes, whatever the executors and --spark-partitions."""
    parts = []
    size = PART_SAMPLES * max_seq_len
    for split in sorted({s for s, _, _ in sizes}):
        part, filled = 0, 0
        for unit, tokens in sorted((u, n) for s, u, n in sizes if s == split):
            if filled >= size:
                part, filled = part + 1, 0
            parts.append((split, unit, part))
            filled += tokens
    return parts


def _merge_split(output: Output, split: str, rows: list[Any], config: PipelineConfig) -> dict[str, int]:
    from streaming.base.util import merge_index

    rows = sorted(rows, key=lambda r: r["part"])
    samples = sum(r["samples"] for r in rows)
    folder = f"{output.target}/{split}"
    if samples:
        merge_index([f"{folder}/{r['folder']}/index.json" for r in rows], folder, keep_local=True)
    elif not output.remote:  # streaming cannot open a dataset without samples: leave no empty split
        shutil.rmtree(folder, ignore_errors=True)
    return {
        "samples": samples,
        "tokens": samples * config.max_seq_len,
        "documents": sum(r["documents"] for r in rows),
        "remainder_tokens_dropped": sum(r["remainder"] for r in rows),
    }


def _upload_stats(report: dict[str, Any], out: str) -> None:
    from streaming.base.storage import CloudUploader

    local = Path(tempfile.mkdtemp(prefix="replitlm-stats-"))
    write_json(local / "stats.json", report)
    CloudUploader.get(out=(str(local), out), keep_local=False, exist_ok=True).upload_file("stats.json")


@contextmanager
def worker_errors() -> Iterator[None]:
    """A failed task's error, buried in Spark's Java and Python tracebacks, as one line."""
    try:
        yield
    except SparkJobError:
        raise
    except Exception as e:
        text = str(e)
        ours = re.search(rf"RuntimeError: {re.escape(WORKER_ERROR)}([^\n]*)", text)
        if ours:
            raise SparkJobError(ours.group(1).strip()) from None
        missing = re.search(r"ModuleNotFoundError: No module named '([^']+)'", text)
        if missing:
            raise SparkJobError(
                f"Spark's Python workers cannot import {missing.group(1)}: install this project with its "
                "spark extra (pip install 'replitlm[spark]') in the Python every executor runs "
                "(PYSPARK_PYTHON, or spark.pyspark.python)"
            ) from None
        raise


@contextmanager
def _quiet(*loggers: str) -> Iterator[None]:
    """streaming's merge_index logs a warning per call about its temporary folder."""
    saved = {name: logging.getLogger(name).level for name in loggers}
    for name in loggers:
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        yield
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)
