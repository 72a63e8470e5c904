"""Instruction data -> prompt/response records."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from streaming import StreamingDataset

from replitlm.data.instruct import InstructError, PromptTemplate, convert
from tests.conftest import REPO, SHARED

ALPACA = SHARED / "data" / "code_alpaca_2k.json"
CLI = REPO / "data_prep" / "convert_instruct_dataset.py"


def test_code_alpaca_to_mds(tmp_path: Path) -> None:
    records = json.loads(ALPACA.read_text())
    report = convert([str(ALPACA)], str(tmp_path / "mds"))
    empty = [r for r in records if not r["output"].strip()]  # the sample really has two
    assert report.written == len(records) - len(empty)
    assert len(report.bad) == len(empty) and all(b.endswith("empty response") for b in report.bad)
    lines = ALPACA.read_text().splitlines()
    for problem in report.bad:  # the reported line is where that record starts
        line_no = int(problem.split(":")[1])
        assert lines[line_no - 1].strip() == "{"
    ds = StreamingDataset(local=str(tmp_path / "mds"), shuffle=False, batch_size=1)
    first = ds[0]
    assert first["prompt"] == PromptTemplate().render(records[0]["instruction"], records[0]["input"])
    assert first["response"] == records[0]["output"]
    assert "### Input:" in first["prompt"] and first["prompt"].endswith("### Response:\n")
    no_input = next(i for i, r in enumerate(records) if not r["input"].strip())
    assert "### Input:" not in ds[no_input]["prompt"]


def test_bad_records_are_reported_with_line_numbers(tmp_path: Path) -> None:
    lines = [
        {"instruction": "Add two numbers", "input": "", "output": "a + b"},
        {"instruction": "Missing output"},
        {"instruction": "Empty", "output": "   "},
        {"instruction": 5, "output": "x"},
        {"prompt": "p", "response": "r"},
    ]
    src = tmp_path / "data.jsonl"
    src.write_text("\n".join(json.dumps(x) for x in lines) + "\n{broken\n")
    report = convert([str(src)], str(tmp_path / "out.jsonl"))
    assert report.written == 2
    assert report.bad == [
        f"{src}:2: missing field 'output'",
        f"{src}:3: empty response",
        f"{src}:4: field 'instruction' must be a string, got int",
        f"{src}:6: invalid JSON (Expecting property name enclosed in double quotes)",
    ]
    out = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert out[1] == {"prompt": "p", "response": "r"}
    with pytest.raises(InstructError, match=r"data\.jsonl:2: missing field 'output'"):
        convert([str(src)], str(tmp_path / "strict.jsonl"), strict=True)
    assert not (tmp_path / "strict.jsonl").exists() and not (tmp_path / ".strict.jsonl.partial").exists()


def test_json_array_records_report_their_line(tmp_path: Path) -> None:
    src = tmp_path / "data.json"
    src.write_text('[\n  {"instruction": "a", "output": "b"},\n  {"instruction": "c",\n   "output": ""}\n]\n')
    report = convert([str(src)], str(tmp_path / "out.jsonl"))
    assert report.written == 1 and report.bad == [f"{src}:3: empty response"]


def test_cli_with_custom_template(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    cmd = [sys.executable, str(CLI), "--input", str(ALPACA), "--out", str(out),
           "--template", "Q: {instruction}\\n{input}\\nA:", "--template-no-input", "Q: {instruction}\\nA:"]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    first = json.loads(out.read_text().splitlines()[0])
    assert first["prompt"].startswith("Q: ") and first["prompt"].endswith("\nA:")
    bad = subprocess.run(
        [*cmd[:6], "--template", "no placeholders"], capture_output=True, text=True, timeout=300
    )
    assert bad.returncode == 2 and "lacks {instruction}" in bad.stderr
