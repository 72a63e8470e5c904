"""The `triton` attention kernels compile for A100 (sm_80) and H100 (sm_90), and every autotune list keeps a
config that fits the GPU's shared memory, checked on CPU by compiling ahead of time
(scripts/bench/triton_shared_memory.py: `triton.compile` for an explicit target, with triton's own ptxas).

Configs over the limit are legal (the autotuner skips them with OutOfResources) and are reported as warnings;
a (kernel, head dim, dtype) with none that fits would fail to launch on that GPU.

To keep the test short it compiles bf16 at head dim 80 (replit-code-v1-3b's, run on 128-wide tiles) only: fp16
and head dim 128 give byte-for-byte the same shared memory (same element size, same tiles) and head dims up
to 64 (tiles up to 64 wide) need less for every config; docs/gpu-results.md has the script's full table.
fp32 compiles far slower (its exact products are not tensor-core dots), so only the configs that must fit it
on an A100 are compiled for it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from collections import defaultdict
from pathlib import Path

import pytest

from tests.conftest import REPO

# Launches processes, trains, or runs the sandbox: in `make test`, not in `make test-fast`.
pytestmark = pytest.mark.integration

SCRIPT = Path(REPO, "scripts", "bench", "triton_shared_memory.py")
ARCHS = [80, 90]
HEAD_DIMS = [80]
DTYPES = ["bf16"]


def compile_rows(*args: str) -> list[dict]:
    """The script's JSON rows (one per arch, kernel, head dim, dtype and config), run in its own process: this
    one has TRITON_INTERPRET=1 (tests/conftest.py), under which the kernels cannot be compiled."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    cmd = [sys.executable, str(SCRIPT), "--json", *args]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=540, check=False)
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout)


def describe(r: dict) -> str:
    return f"{r['block_m']}x{r['block_n']} w{r['warps']} s{r['stages']}: {r['shared']} of {r['limit']} bytes"


@pytest.mark.slow
def test_every_kernel_keeps_a_config_that_fits_shared_memory() -> None:
    rows = compile_rows("--archs", *map(str, ARCHS), "--head-dims", *map(str, HEAD_DIMS), "--dtypes", *DTYPES)
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        assert r["shared"] > 0 and r["fits"] == (r["shared"] <= r["limit"])  # the script's verdict, rechecked
        groups[(f"sm_{r['arch']}", r["kernel"], r["head_dim"], r["dtype"])].append(r)
    kernels = ("fwd", "dkdv", "dq", "delta")
    assert set(groups) == {
        (f"sm_{a}", k, d, t) for a in ARCHS for k in kernels for d in HEAD_DIMS for t in DTYPES
    }
    none_fit = [group for group, configs in groups.items() if not any(r["fits"] for r in configs)]
    assert not none_fit, f"no autotune config fits shared memory for {none_fit}"
    skipped = [f"{g} {describe(r)}" for g, configs in groups.items() for r in configs if not r["fits"]]
    if skipped:  # legal, but worth seeing: the autotuner drops these on that GPU
        warnings.warn("configs over shared memory: " + "; ".join(skipped), stacklevel=1)


@pytest.mark.slow
def test_last_configs_fit_fp32_on_an_a100() -> None:
    """On an A100, fp32 inputs with head dim 128 (or 80: same tiles) fit only the last config of each list."""
    only = ["--archs", "80", "--head-dims", "128", "--dtypes", "fp32", "--kernels", "fwd", "dkdv", "dq"]
    rows = compile_rows(*only, "--last")
    assert [r["kernel"] for r in rows] == ["fwd", "dkdv", "dq"]
    assert all(r["fits"] for r in rows), [f"{r['kernel']} {describe(r)}" for r in rows]
