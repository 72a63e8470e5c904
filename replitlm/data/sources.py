"""Readers: turn each input into a stream of raw documents, one at a time (never the whole corpus).

An input is
- a directory tree of source files (language from the extension; symlinks are not followed);
- a `.jsonl` / `.jsonl.gz` / `.parquet` file, or a `datasets` folder saved with `save_to_disk`, in
  the-stack-dedup's schema (`content`, `lang`, `ext`, `licenses`, `max_stars_repo_path`, ...);
- a hub dataset id (`bigcode/the-stack-dedup`, with `data_dir`), streamed through `datasets.load_dataset`;
  prefix a local path with `hf:` to load it the same way.
A file that cannot be read (or stops being readable half-way) becomes a `RawDoc` with a drop reason, so it is
counted and reported, not silently lost and not fatal.
"""

from __future__ import annotations

import errno
import gzip
import json
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from replitlm.data.languages import canonical_language, language_of_path


@dataclass
class RawDoc:
    source: str  # file path, or "input:record" for records inside a file or dataset
    data: bytes | str | None
    lang: str | None
    licenses: list[str] | None = None
    drop: str | None = None  # set when the reader already knows the document is unusable
    detail: str = field(default="", compare=False)
    deferred: bool = False  # a file not read yet: `load` reads it (in a worker, off the main process)


class InputError(ValueError):
    """An input cannot be used at all (missing, unknown kind); the message names it."""


def iter_inputs(inputs: list[str], data_dir: str | None = None, split: str = "train") -> Iterator[RawDoc]:
    for spec in inputs:
        yield from iter_input(spec, data_dir, split)


def iter_input(spec: str, data_dir: str | None = None, split: str = "train") -> Iterator[RawDoc]:
    kind, where = input_kind(spec)
    if kind == "hub":
        yield from iter_hub_dataset(where, data_dir, split)
    elif kind == "saved":
        yield from iter_saved_dataset(Path(where), split)
    elif kind == "tree":
        yield from iter_tree(Path(where))
    elif kind == "jsonl":
        yield from iter_jsonl(Path(where))
    else:
        yield from iter_parquet(Path(where))


def input_kind(spec: str) -> tuple[str, str]:
    """(kind, path or hub id) of an --input: kind is hub, saved, tree, jsonl or parquet."""
    if spec.startswith("hf:"):
        return "hub", spec[3:]
    path = Path(spec)
    if path.is_dir():
        if (path / "dataset_info.json").exists() or (path / "dataset_dict.json").exists():
            return "saved", spec
        return "tree", spec
    if path.is_file():
        name = path.name.lower()
        if name.endswith((".jsonl", ".jsonl.gz", ".json.gz")):
            return "jsonl", spec
        if name.endswith(".parquet"):
            return "parquet", spec
        raise InputError(
            f"--input {spec}: unknown file kind (expected .jsonl, .jsonl.gz, .parquet or a folder)"
        )
    if "/" in spec and not spec.startswith((".", "/")) and not path.exists():
        return "hub", spec
    raise InputError(f"--input {spec}: no such file or folder")


def iter_tree(root: Path) -> Iterator[RawDoc]:
    """Files below `root` in sorted order, not yet read (`load` reads them, in a worker).

    Symlinked folders are not entered (no loops)."""
    for dirpath, dirnames, filenames in os.walk(root, onerror=None, followlinks=False):
        dirnames.sort()
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            yield RawDoc(path, None, language_of_path(path), deferred=True)


def load(doc: RawDoc, max_bytes: int) -> RawDoc:
    """A deferred document with its bytes read (or its drop reason); others unchanged."""
    return read_file(doc.source, max_bytes) if doc.deferred else doc


def read_file(path: str, max_bytes: int) -> RawDoc:
    lang = language_of_path(path)
    try:
        data = _read_at_most(path, max_bytes + 1)
    except OSError as e:
        return RawDoc(path, None, lang, drop="unreadable", detail=f"{type(e).__name__}: {e.strerror or e}")
    if isinstance(data, int):
        return RawDoc(path, None, lang, drop="too_large", detail=f"{data} bytes")
    return RawDoc(path, data, lang)


def _read_at_most(path: str, limit: int) -> bytes | int:
    """The file's bytes, or its size when that reaches `limit` (then it is not read).

    open/fstat/read/close and nothing else: for the many small files of a source tree, the system calls of
    a buffered `open().read()` plus a `stat` cost more than copying the bytes. Follows a file symlink (a
    loop raises ELOOP). Non-blocking open and a regular-file check: a FIFO in the tree must not hang the run."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        if info.st_size >= limit:
            return info.st_size
        chunks, total = [], 0
        while total < limit:  # size + 1 first: the second read sees the end (or that the file grew)
            chunk = os.read(fd, (info.st_size + 1 if total <= info.st_size else limit) - total)
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        data = b"".join(chunks)  # one chunk: the same object, no copy
        return len(data) if len(data) >= limit else data
    finally:
        os.close(fd)


def _record_doc(source: str, record: dict[str, Any]) -> RawDoc:
    content = record.get("content")
    if not isinstance(content, str):
        return RawDoc(source, None, None, drop="bad_record", detail="no string 'content' field")
    lang = record.get("lang")
    path = record.get("max_stars_repo_path") or record.get("path") or ""
    if lang:
        lang = canonical_language(str(lang))
    else:
        ext = record.get("ext")
        lang = language_of_path(f"x.{ext}" if ext else path)
    licenses = record.get("licenses", record.get("max_stars_repo_licenses"))
    return RawDoc(source, content, lang, list(licenses) if licenses is not None else None)


def jsonl_records(path: Path) -> Iterator[tuple[int, Any]]:
    """(line number, parsed value or the JSONDecodeError) for each non-blank line of a .jsonl(.gz) file."""
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            if line.strip():
                try:
                    yield line_no, json.loads(line)
                except json.JSONDecodeError as e:
                    yield line_no, e


def iter_jsonl(path: Path) -> Iterator[RawDoc]:
    line_no = 0
    try:
        for line_no, record in jsonl_records(path):
            where = f"{path}:{line_no}"
            if isinstance(record, json.JSONDecodeError):
                yield RawDoc(where, None, None, drop="bad_record", detail=f"invalid JSON: {record}")
            elif not isinstance(record, dict):
                yield RawDoc(where, None, None, drop="bad_record", detail="not a JSON object")
            else:
                yield _record_doc(where, record)
    except (OSError, EOFError, UnicodeDecodeError) as e:  # truncated .gz, unreadable file
        yield RawDoc(
            f"{path}:{line_no + 1}", None, None, drop="unreadable", detail=f"{type(e).__name__}: {e}"
        )


def iter_parquet(path: Path, row_group: int | None = None) -> Iterator[RawDoc]:
    """The file's records (or one row group's: the Spark engine reads row groups in parallel); a record's
    source is `path:row`, its row in the whole file either way."""
    import pyarrow.parquet as pq

    row = 0
    try:
        parquet = pq.ParquetFile(path)
        columns = [
            c
            for c in ("content", "lang", "ext", "licenses", "max_stars_repo_licenses", "max_stars_repo_path")
            if c in parquet.schema_arrow.names
        ]
        groups = None
        if row_group is not None:
            groups = [row_group]
            row = sum(parquet.metadata.row_group(g).num_rows for g in range(row_group))
        for batch in parquet.iter_batches(batch_size=256, columns=columns, row_groups=groups):
            for record in batch.to_pylist():
                yield _record_doc(f"{path}:{row}", record)
                row += 1
    except Exception as e:  # pyarrow raises ArrowInvalid / OSError for truncated or corrupt files
        yield RawDoc(f"{path}:{row}", None, None, drop="unreadable", detail=f"{type(e).__name__}: {e}")


def iter_saved_dataset(path: Path, split: str, rows: range | None = None) -> Iterator[RawDoc]:
    """The dataset's records (or those of `rows`: the Spark engine reads slices in parallel)."""
    ds = open_saved_dataset(path, split)
    if rows is not None:
        ds = ds.select(rows)
    for i, record in enumerate(ds, start=rows.start if rows is not None else 0):
        yield _record_doc(f"{path}:{i}", record)


def open_saved_dataset(path: Path, split: str) -> Any:
    import datasets

    ds = datasets.load_from_disk(str(path))
    if isinstance(ds, datasets.DatasetDict):
        if split not in ds:
            raise InputError(f"--input {path}: no split '{split}' (has {sorted(ds)}); use --split")
        ds = ds[split]
    return ds


def iter_hub_dataset(name: str, data_dir: str | None, split: str) -> Iterator[RawDoc]:
    """Stream a dataset through `datasets.load_dataset` (hub id, or local folder/script)."""
    import datasets

    try:
        ds = datasets.load_dataset(name, data_dir=data_dir, split=split, streaming=True)
    except Exception as e:
        raise InputError(f"--input {name}: cannot load the dataset ({type(e).__name__}: {e})") from e
    for i, record in enumerate(ds):
        yield _record_doc(f"{name}:{i}", record)
