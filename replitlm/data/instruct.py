"""Instruction data -> prompt/response records for fine-tuning.

Reads Alpaca-style records (`instruction`, optional `input`, `output`) or records that already have
`prompt` and `response`, from a .json list, .jsonl(.gz), a `datasets` folder or a hub id, renders the
prompt with a template, and writes JSONL or MDS (columns `prompt`, `response`). A bad record (missing or
non-string field, empty response) is reported with its line (or row) number and skipped, or with
`strict=True` stops the run; nothing is half-written either way.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from replitlm.data.code_pairs import function_pairs, is_function_pairs_spec
from replitlm.data.sources import jsonl_records
from replitlm.hub import unreachable

TEMPLATE_WITH_INPUT = "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
TEMPLATE_NO_INPUT = "### Instruction:\n{instruction}\n\n### Response:\n"


class InstructError(ValueError):
    """A bad input or record; the message names the file and line."""


@dataclass
class PromptTemplate:
    with_input: str = TEMPLATE_WITH_INPUT
    no_input: str = TEMPLATE_NO_INPUT

    def __post_init__(self) -> None:
        for name, template, needed in (
            ("with_input", self.with_input, ("{instruction}", "{input}")),
            ("no_input", self.no_input, ("{instruction}",)),
        ):
            missing = [k for k in needed if k not in template]
            if missing:
                raise InstructError(f"template {name} lacks {', '.join(missing)}")

    def render(self, instruction: str, input_text: str) -> str:
        if input_text.strip():
            return self.with_input.format(instruction=instruction, input=input_text)
        return self.no_input.format(instruction=instruction)


@dataclass
class ConversionReport:
    written: int = 0
    bad: list[str] = field(default_factory=list)  # "file:line: problem"


def iter_records(spec: str, split: str = "train") -> Iterator[tuple[str, Any]]:
    """(location, record) pairs; location is file:line for JSONL, file:index for a JSON list or dataset."""
    if is_function_pairs_spec(spec):
        yield from function_pairs(spec)
        return
    path = Path(spec)
    if path.is_file():
        name = path.name.lower()
        if name.endswith((".json", ".json.gz")):
            opener = gzip.open if name.endswith(".gz") else open
            with opener(path, "rt", encoding="utf-8") as f:
                yield from _json_array(path, f.read())
            return
        for line_no, record in jsonl_records(path):
            if isinstance(record, json.JSONDecodeError):
                record = InstructError(f"invalid JSON ({record.msg})")
            yield f"{path}:{line_no}", record
        return
    import datasets

    if path.is_dir():
        ds = datasets.load_from_disk(str(path))
        ds = ds[split] if isinstance(ds, datasets.DatasetDict) else ds
    elif "/" in spec and not spec.startswith((".", "/")):
        yield from _hub_records(spec, split)
        return
    else:
        raise InstructError(f"--input {spec}: no such file or folder")
    for i, record in enumerate(ds):
        yield f"{spec}[{i}]", record


def _hub_records(spec: str, split: str) -> Iterator[tuple[str, Any]]:
    import datasets

    try:
        for i, record in enumerate(datasets.load_dataset(spec, split=split, streaming=True)):
            yield f"{spec}[{i}]", record
    except (OSError, ValueError) as exc:
        if not unreachable(exc):
            raise
        raise InstructError(
            f"{spec}: the dataset is on the Hugging Face hub, which cannot be reached from here: use a local "
            "copy instead (a .json/.jsonl file or a `datasets` folder), or functions:FOLDER for pairs made from "
            "your own Python code (functions:stdlib: Python's standard library)"
        ) from None


def _json_array(path: Path, text: str) -> Iterator[tuple[str, Any]]:
    """The elements of a JSON array, each with the line it starts on."""
    decoder = json.JSONDecoder()
    pos, line = 0, 1

    def skip(chars: str) -> None:
        nonlocal pos, line
        while pos < len(text) and text[pos] in chars:
            line += text[pos] == "\n"
            pos += 1

    skip(" \t\r\n")
    if not text.startswith("[", pos):
        raise InstructError(f"{path}:{line}: expected a JSON array of records (or use .jsonl)")
    pos += 1
    while True:
        skip(" \t\r\n")
        if text.startswith("]", pos):
            return
        try:
            record, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as e:
            raise InstructError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from e
        yield f"{path}:{line}", record
        line += text.count("\n", pos, end)
        pos = end
        skip(" \t\r\n")
        if text.startswith(",", pos):
            pos += 1


def to_prompt_response(record: Any, template: PromptTemplate) -> tuple[str, str]:
    """(prompt, response) of one record, or InstructError saying what is wrong with it."""
    if isinstance(record, Exception):
        raise record
    if not isinstance(record, dict):
        raise InstructError(f"expected a JSON object, got {type(record).__name__}")
    if "prompt" in record or "response" in record:
        prompt, response = _field(record, "prompt"), _field(record, "response")
    else:
        instruction, response = _field(record, "instruction"), _field(record, "output")
        input_text = record.get("input", "")
        if input_text is None:
            input_text = ""
        if not isinstance(input_text, str):
            raise InstructError(f"field 'input' must be a string, got {type(input_text).__name__}")
        if not instruction.strip():
            raise InstructError("empty 'instruction'")
        prompt = template.render(instruction, input_text)
    if not response.strip():
        raise InstructError("empty response")
    if not prompt:
        # Nothing would predict the response's first token (unpacked), or the previous example's EOS would
        # be trained to predict it (packed): give every example a prompt, even a one-line comment.
        raise InstructError("empty prompt")
    return prompt, response


def _field(record: dict, key: str) -> str:
    if key not in record:
        raise InstructError(f"missing field '{key}'")
    value = record[key]
    if not isinstance(value, str):
        raise InstructError(f"field '{key}' must be a string, got {type(value).__name__}")
    return value


def convert(
    inputs: list[str],
    out: str,
    template: PromptTemplate | None = None,
    strict: bool = False,
    split: str = "train",
) -> ConversionReport:
    """Write prompt/response records to `out` (a .jsonl file, or an MDS folder otherwise), atomically."""
    template = template or PromptTemplate()
    report = ConversionReport()
    out_path = Path(out)
    as_jsonl = out_path.suffix == ".jsonl"
    staging = out_path.parent / f".{out_path.name}.partial"
    shutil.rmtree(staging, ignore_errors=True) if staging.is_dir() else staging.unlink(missing_ok=True)
    staging.parent.mkdir(parents=True, exist_ok=True)
    writer = _jsonl_writer(staging) if as_jsonl else _mds_writer(staging)
    try:
        for spec in inputs:
            for location, record in iter_records(spec, split):
                try:
                    prompt, response = to_prompt_response(record, template)
                except InstructError as e:
                    if strict:
                        raise InstructError(f"{location}: {e}") from None
                    report.bad.append(f"{location}: {e}")
                    continue
                writer.write({"prompt": prompt, "response": response})
                report.written += 1
        writer.finish()
    except BaseException:
        writer.abort()
        shutil.rmtree(staging, ignore_errors=True) if staging.is_dir() else staging.unlink(missing_ok=True)
        raise
    if out_path.is_dir():
        shutil.rmtree(out_path)
    os.replace(staging, out_path)
    return report


class _jsonl_writer:
    def __init__(self, path: Path) -> None:
        self.f = open(path, "w", encoding="utf-8")  # noqa: SIM115 - closed in finish/abort

    def write(self, sample: dict[str, str]) -> None:
        self.f.write(json.dumps(sample, ensure_ascii=False) + "\n")

    def finish(self) -> None:
        self.f.close()

    def abort(self) -> None:
        self.f.close()


class _mds_writer:
    def __init__(self, path: Path) -> None:
        from streaming import MDSWriter

        self.w = MDSWriter(out=str(path), columns={"prompt": "str", "response": "str"}, compression="zstd")

    def write(self, sample: dict[str, str]) -> None:
        self.w.write(sample)

    def finish(self) -> None:
        self.w.finish()

    def abort(self) -> None:
        pass
