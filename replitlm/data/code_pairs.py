"""Instruct pairs from real code, with no download: each documented Python function becomes one example, its
signature and docstring the prompt, its body the response (the docstring says what to write; the body is
what its author wrote). The LoRA quickstart trains on the pairs of the quickstart's own corpus, the Python
standard library of this machine.

A dataset spec `functions:FOLDER` (or `functions:stdlib`) reads them wherever instruct data is read: the
fine-tuning loader's `dataset.path` and `convert_instruct_dataset.py --input`.
"""

from __future__ import annotations

import ast
import sysconfig
from collections.abc import Iterator
from pathlib import Path

PREFIX = "functions:"
STDLIB = "stdlib"  # functions:stdlib = the standard library's sources (without its tests and site-packages)
MAX_RESPONSE_CHARS = 2000  # longer bodies would mostly be cut at the quickstart's 256 tokens


def is_function_pairs_spec(spec: str) -> bool:
    return spec.startswith(PREFIX)


def stdlib_sources() -> Iterator[tuple[Path, Path]]:
    """(path, path relative to the standard library) of its own .py sources in sorted order: without
    site-packages, its test suites and idlelib (the quickstart's corpus and `functions:stdlib`)."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    for path in sorted(stdlib.rglob("*.py")):
        rel = path.relative_to(stdlib)
        if rel.parts[0] not in ("site-packages", "test", "idlelib") and "tests" not in rel.parts:
            yield path, rel


def function_pairs_files(spec: str) -> list[Path]:
    """The .py files a `functions:...` spec reads, sorted; FileNotFoundError if it names no folder."""
    name = spec[len(PREFIX) :]
    if name == STDLIB:
        return [path for path, _ in stdlib_sources()]
    if not Path(name).is_dir():
        raise FileNotFoundError(f"{spec}: {name} is not a folder of Python files")
    return sorted(Path(name).rglob("*.py"))


def function_pairs(spec: str) -> Iterator[tuple[str, dict[str, str]]]:
    """(file:line, {prompt, response}) for every documented function with a body under the spec's folder,
    in sorted file order and source order."""
    for path in function_pairs_files(spec):
        try:
            source = path.read_text(encoding="utf-8")
            tree = ast.parse(source)
        except (UnicodeDecodeError, SyntaxError, ValueError, OSError):
            continue  # not UTF-8 or not Python 3 (a few deliberate fixtures): not an example
        lines = source.splitlines(keepends=True)
        for node in ast.walk(tree):
            pair = _pair(node, lines)
            if pair is not None:
                yield f"{path}:{node.lineno}", pair


def _pair(node: ast.AST, lines: list[str]) -> dict[str, str] | None:
    if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) or ast.get_docstring(node) is None:
        return None
    docstring, body = node.body[0], node.body[1:]
    if not body or node.end_lineno is None or docstring.end_lineno is None:
        return None
    indent, text = node.col_offset, lines[node.lineno - 1 : node.end_lineno]
    if any(line.strip() and len(line) - len(line.lstrip()) < indent for line in text):
        return None  # a string literal that starts at column 0: the function does not dedent cleanly
    prompt = "".join(_dedent(line, indent) for line in lines[node.lineno - 1 : docstring.end_lineno])
    response = "".join(_dedent(line, indent) for line in lines[docstring.end_lineno : node.end_lineno])
    if not response.strip() or len(response) > MAX_RESPONSE_CHARS:
        return None
    return {"prompt": prompt, "response": response}


def _dedent(line: str, indent: int) -> str:
    """`line` without the function's indentation; a blank line shorter than it keeps its line ending."""
    text = line.rstrip("\r\n")
    return line[indent:] if len(text) >= indent else line[len(text) :]
