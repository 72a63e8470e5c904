"""The Spark engine (local[2]) against the local engine: the same documents kept, the same report, the same
samples where it packs in one part; deterministic, all-or-nothing, one-line errors."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from replitlm.data import spark_engine
from replitlm.data.pipeline import PipelineConfig, run
from tests.conftest import REPO, STDLIB
from tests.data.planted import read_split

pytestmark = pytest.mark.integration  # starts a JVM and Spark's Python workers

pytest.importorskip("pyspark", reason="the spark extra is not installed (pip install 'replitlm[spark]')")


@pytest.fixture(scope="module")
def spark():
    """One local[2] session for the module (a JVM takes seconds to start); run_spark uses the active one."""
    if shutil.which("java") is None:
        pytest.skip("Spark needs Java 17, and `java` is not on PATH")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    from pyspark.sql import SparkSession

    session = (
        SparkSession.builder.master("local[2]")
        .appName("replitlm-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("FATAL")
    yield session
    session.stop()


def config(inputs: list[Path], out: Path, spiece: Path, **overrides) -> PipelineConfig:
    values = dict(
        inputs=[str(p) for p in inputs],
        out=str(out),
        tokenizer=str(spiece),
        max_seq_len=64,
        val_fraction=0.3,
        sequence_id=True,
        workers=0,
        progress=False,
    )
    return PipelineConfig(**(values | overrides))


def outcome(report: dict) -> dict:
    """What the two engines must agree on: everything but the time and the engine's own settings."""
    return {k: v for k, v in report.items() if k not in ("seconds", "config")}


def samples(out: Path) -> dict[str, list[dict]]:
    return {split: read_split(out / split) for split in ("train", "val") if (out / split).exists()}


def assert_same_samples(a: Path, b: Path) -> None:
    left, right = samples(a), samples(b)
    assert sorted(left) == sorted(right)
    for split in left:
        assert len(left[split]) == len(right[split]) > 0, split
        for x, y in zip(left[split], right[split], strict=True):
            assert np.array_equal(x["tokens"], y["tokens"]) and np.array_equal(
                x["sequence_id"], y["sequence_id"]
            )
            assert x["doc_languages"] == y["doc_languages"]


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def both_engines(cfg: PipelineConfig, tmp_path: Path) -> tuple[dict, dict, Path, Path]:
    local_out, spark_out = tmp_path / "local", tmp_path / "spark"
    local = run(PipelineConfig(**(vars(cfg) | {"out": str(local_out), "spark_partitions": None})))
    spark = spark_engine.run_spark(PipelineConfig(**(vars(cfg) | {"out": str(spark_out), "engine": "spark"})))
    return local, spark, local_out, spark_out


@pytest.mark.parametrize("near_dedup", [False, True], ids=["exact-dedup", "near-dedup"])
def test_keeps_what_the_local_engine_keeps(
    spark, corpus, tmp_path: Path, spiece_path: Path, near_dedup: bool
) -> None:
    """Every filter, decontamination, exact (and near) dedup, the split: the same report, and in one part per
    split the very samples of the local engine."""
    root, _ = corpus
    cfg = config([root], tmp_path / "x", spiece_path, near_dedup=near_dedup)
    local, spark_report, local_out, spark_out = both_engines(cfg, tmp_path)
    assert outcome(spark_report) == outcome(local)
    assert local["dropped"]["exact_duplicate"] == 1 and local["dropped"]["contaminated"] == 1
    assert local["dropped"].get("near_duplicate", 0) == (1 if near_dedup else 0)
    assert local["splits"]["train"]["samples"] and local["splits"]["val"]["samples"]
    assert_same_samples(local_out, spark_out)
    assert json.loads((spark_out / "stats.json").read_text())["config"]["engine"] == "spark"
    assert not (tmp_path / ".spark.partial").exists()


def test_same_input_gives_identical_bytes_whatever_the_partitions(
    spark, corpus, tmp_path: Path, spiece_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(spark_engine, "PART_SAMPLES", 8)  # several parts: their cuts must not move either
    monkeypatch.setattr(spark_engine, "UNIT_FILES", 3)
    root, _ = corpus
    outs = []
    for partitions in (2, 5):
        out = tmp_path / f"p{partitions}"
        spark_engine.run_spark(config([root], out, spiece_path, engine="spark", spark_partitions=partitions))
        outs.append({k: v for k, v in files(out).items() if k != "stats.json"})
    assert outs[0] == outs[1] and any(k.endswith(".mds.zstd") for k in outs[0])
    assert any(k.startswith("train/part-00001/") for k in outs[0])


def test_records_parquet_row_groups_and_saved_dataset_slices(
    spark, tmp_path: Path, spiece_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Record inputs cut into several units each (parquet row groups, dataset slices): same as the local engine."""
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    names = ["bisect.py", "heapq.py", "shlex.py", "csv.py", "json/decoder.py", "json/scanner.py"]
    rows = [
        {"content": (STDLIB / n).read_text(), "lang": "Python", "licenses": ["MIT"], "max_stars_repo_path": n}
        for n in names
    ]
    rows[1]["licenses"] = ["GPL-3.0"]
    jsonl = tmp_path / "part.jsonl"
    jsonl.write_text(
        "\n".join(json.dumps(r) for r in rows[:3]) + "\n{not json\n" + json.dumps({"lang": "C"}) + "\n"
    )
    cut = tmp_path / "cut.jsonl.gz"
    with gzip.open(cut, "wt") as f:
        f.write("\n".join(json.dumps(r) for r in rows * 50))
    cut.write_bytes(cut.read_bytes()[:3000])
    parquet = tmp_path / "part.parquet"
    pq.write_table(pa.Table.from_pylist(rows[2:]), parquet, row_group_size=1)  # rows[2] repeats the JSONL
    assert pq.ParquetFile(parquet).metadata.num_row_groups == 4
    saved = tmp_path / "saved"
    datasets.Dataset.from_list([{k: r[k] for k in ("content", "lang")} for r in rows]).save_to_disk(
        str(saved)
    )
    monkeypatch.setattr(spark_engine, "UNIT_ROWS", 4)  # two slices

    units = spark_engine.list_units(config([jsonl, cut, parquet, saved], tmp_path / "x", spiece_path))
    assert [u[1] for u in units] == [
        "jsonl",
        "jsonl",
        "parquet",
        "parquet",
        "parquet",
        "parquet",
        "saved",
        "saved",
    ]
    cfg = config([jsonl, cut, parquet, saved], tmp_path / "x", spiece_path, near_dedup=False)
    local, spark_report, local_out, spark_out = both_engines(cfg, tmp_path)
    assert outcome(spark_report) == outcome(local)
    assert {"license", "bad_record", "unreadable", "exact_duplicate"} <= set(local["dropped"])
    assert_same_samples(local_out, spark_out)


def test_many_parts_hold_the_same_documents_in_input_order(
    spark, corpus, tmp_path: Path, spiece_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past PART_SAMPLES samples a split is packed in several parts; the merged index reads as one dataset
    with the local engine's documents in the same order, less a remainder per part."""
    monkeypatch.setattr(spark_engine, "PART_SAMPLES", 8)
    monkeypatch.setattr(spark_engine, "UNIT_FILES", 2)  # parts are whole units
    root, _ = corpus
    cfg = config([root], tmp_path / "x", spiece_path, near_dedup=False, val_fraction=0.0, spark_partitions=4)
    local, spark_report, local_out, spark_out = both_engines(cfg, tmp_path)
    parts = sorted(p.name for p in (spark_out / "train").iterdir() if p.is_dir())
    assert len(parts) > 1 and parts[0] == "part-00000"
    train, local_train = spark_report["splits"]["train"], local["splits"]["train"]
    assert train["documents"] == local_train["documents"]
    total = local_train["samples"] * 64 + local_train["remainder_tokens_dropped"]
    assert train["samples"] * 64 + train["remainder_tokens_dropped"] == total
    assert spark_report["dropped"] == local["dropped"] and spark_report["languages"] == local["languages"]

    def documents(out: Path) -> list[tuple[int, ...]]:  # whole documents: those cut by a sample edge differ
        stream = np.concatenate([s["tokens"] for s in read_split(out / "train")])
        return [tuple(d) for d in np.split(stream, np.flatnonzero(stream == 1) + 1)[1:-1]]

    spark_docs, local_docs = documents(spark_out), documents(local_out)
    assert len(spark_docs) >= len(local_docs) - 2 * len(parts)
    at = [local_docs.index(d) for d in spark_docs if d in local_docs]
    assert at == sorted(at) and len(at) >= len(spark_docs) - len(parts)  # input order, across the parts


def test_remote_output_publishes_each_index_last(
    spark, corpus, tmp_path: Path, spiece_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A remote --out: executors upload their parts (here streaming's local "uploader" stands for s3://)."""
    monkeypatch.setattr(spark_engine, "is_remote", lambda out: True)
    root, _ = corpus
    cfg = config([root], tmp_path / "x", spiece_path, near_dedup=False)
    local, spark_report, local_out, spark_out = both_engines(cfg, tmp_path)
    assert outcome(spark_report) == outcome(local)
    assert_same_samples(local_out, spark_out)
    assert (spark_out / "stats.json").exists() and not (tmp_path / ".spark.partial").exists()


def test_a_task_error_is_one_line_naming_the_input_and_nothing_is_published(
    spark, corpus, tmp_path: Path, spiece_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, _ = corpus
    listed = spark_engine.list_units
    gone = tmp_path / "gone_dataset"

    def a_dataset_that_vanished(cfg: PipelineConfig) -> list:  # listed on the driver, gone on the executor
        units = listed(cfg)
        return [*units, (len(units), "saved", str(gone), 0, 10)]

    monkeypatch.setattr(spark_engine, "list_units", a_dataset_that_vanished)
    out = tmp_path / "out"
    with pytest.raises(spark_engine.SparkJobError) as failure:
        spark_engine.run_spark(config([root], out, spiece_path, engine="spark"))
    message = str(failure.value)
    assert "\n" not in message and f"reading {gone}" in message and "FileNotFoundError" in message, message
    assert not out.exists() and not (tmp_path / ".out.partial").exists()


def test_cli_with_executors_that_lack_the_package(tmp_path: Path, spiece_path: Path) -> None:
    """The commonest cluster mistake: executors whose Python cannot import this project. One line, exit 2."""
    if shutil.which("java") is None:
        pytest.skip("Spark needs Java 17, and `java` is not on PATH")
    bare = shutil.which("python3", path="/usr/bin")
    if (
        bare is None
        or subprocess.run([bare, "-c", "import numpy, pyarrow"], capture_output=True).returncode == 0
    ):
        pytest.skip("needs a Python without this project's dependencies at /usr/bin/python3")
    (tmp_path / "src").mkdir()
    shutil.copy(STDLIB / "bisect.py", tmp_path / "src")
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"PYSPARK_PYTHON": bare}
    cmd = [sys.executable, str(REPO / "data_prep" / "convert_code_dataset.py"), "--engine", "spark"]
    cmd += ["--spark-master", "local[1]", "--input", str(tmp_path / "src"), "--out", str(out)]
    cmd += ["--tokenizer", str(spiece_path), "--quiet"]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: Spark's Python workers cannot import") and "replitlm[spark]" in last, last
    assert "Traceback" not in result.stderr
    assert not out.exists() and not (tmp_path / ".out.partial").exists()


def test_near_duplicate_clusters_are_connected_components(spark) -> None:
    """Documents linked through shared band keys form one cluster whose first (in input order) is kept. In a
    chain A~B~C where C shares nothing with A, the local engine's greedy pass keeps C (B, dropped, left no
    keys behind); components drop it: the "little more" the Spark engine can remove."""
    import numpy as np

    from replitlm.data.dedup import Deduplicator

    keys = {10: [1, 2], 30: [2, 3], 20: [3, 4], 50: [5], 40: [5], 60: [6], 70: [7, 8], 80: [8, 9], 90: [9]}
    docs = spark.createDataFrame(list(keys.items()), "order long, keys array<long>").repartition(3)
    dropped = sorted(r["order"] for r in spark_engine.near_duplicates(docs).collect())
    assert dropped == [20, 30, 50, 80, 90]  # clusters {10, 20, 30}, {40, 50}, {70, 80, 90}; 60 alone

    greedy = Deduplicator(exact=False, near=True)
    local = [o for o in sorted(keys) if greedy.check(b"", np.array(keys[o], dtype=np.uint64))]
    assert local == [30, 50, 80]  # 20 and 90 survive the greedy pass: their link was dropped before them
