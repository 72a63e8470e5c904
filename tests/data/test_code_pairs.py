"""Instruct pairs from real code (`functions:FOLDER`): each pair is a documented function cut after its
docstring, so prompt + response is the function's own source, dedented, and parses back to it."""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import pytest

from replitlm.data.code_pairs import function_pairs
from replitlm.data.instruct import InstructError, iter_records
from tests.conftest import STDLIB


def test_pairs_are_the_documented_functions_cut_after_their_docstring(tmp_path: Path) -> None:
    for name in ("json", "textwrap.py", "shlex.py", "argparse.py"):
        source = STDLIB / name
        (shutil.copytree if source.is_dir() else shutil.copy)(source, tmp_path / name)
    pairs = list(function_pairs(f"functions:{tmp_path}"))
    assert len(pairs) > 30
    for location, pair in pairs:
        path, line = location.rsplit(":", 1)
        tree = ast.parse(Path(path).read_text(encoding="utf-8"))
        (original,) = [
            n
            for n in ast.walk(tree)
            if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.lineno == int(line)
        ]
        (parsed,) = ast.parse(pair["prompt"] + pair["response"]).body
        original.decorator_list = []  # the pair starts at `def`
        assert parsed.name == original.name and words(ast.unparse(parsed)) == words(ast.unparse(original))
        assert pair["prompt"].startswith(("def ", "async def ")) and pair["prompt"].rstrip().endswith(
            ('"', "'")
        )
        # the prompt alone is the signature and docstring: completed by `pass`, it is a function with no body
        (stub,) = ast.parse(pair["prompt"] + "    pass\n").body
        assert words(ast.get_docstring(stub)) == words(ast.get_docstring(original)) and len(stub.body) == 2
    # the whole function, its body included, parses back (up to whitespace in multi-line strings); and
    # undocumented functions and methods are not examples
    textwrap_pairs = [p for loc, p in pairs if "textwrap.py" in loc]
    assert {p["prompt"].split("(")[0] for p in textwrap_pairs} >= {"def dedent", "def indent", "def wrap"}


def words(text: str | None) -> list[str]:
    """`text` up to whitespace: dedenting a function also dedents the continuation lines of its strings."""
    return (text or "").split()


def test_pairs_are_read_wherever_instruct_data_is(tmp_path: Path) -> None:
    (tmp_path / "m.py").write_text(
        'def f(x):\n    """Twice x."""\n    return 2 * x\n\n\ndef g():\n    return 1\n'
    )
    assert list(iter_records(f"functions:{tmp_path}")) == [
        (
            f"{tmp_path / 'm.py'}:1",
            {"prompt": 'def f(x):\n    """Twice x."""\n', "response": "    return 2 * x\n"},
        )
    ]
    with pytest.raises(FileNotFoundError, match="not a folder"):
        list(iter_records(f"functions:{tmp_path / 'missing'}"))


def test_a_hub_dataset_that_cannot_be_reached_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    def offline(*args, **kwargs):  # what datasets raises without network (its message, verbatim)
        raise ConnectionError(
            "Couldn't reach 'sahil2801/CodeAlpaca-20k' on the Hub (LocalEntryNotFoundError)"
        )

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(InstructError, match=r"cannot be reached.*functions:FOLDER") as err:
        list(iter_records("sahil2801/CodeAlpaca-20k"))
    assert "\n" not in str(err.value) and str(err.value).startswith("sahil2801/CodeAlpaca-20k: ")
