#!/usr/bin/env python
"""Start-up times: every console script's `--help`, `import replitlm` and the data-prep import, beside a bare
interpreter and the heavy imports they avoid, all measured in this run (median of --repeat runs each).

    python scripts/bench/import_time.py [--repeat 5]

Target (the newcomer issue): each `--help` under 1.5 s. Each line is a fresh process, as a shell, a data-prep
worker or a Spark executor's Python worker starts one.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def seconds(command: list[str], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd="/")
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args()
    py = sys.executable
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    bin_dir = Path(py).parent
    rows = [("python -c pass (baseline)", [py, "-c", "pass"])]
    rows += [(f"import {m}", [py, "-c", f"import {m}"]) for m in ("replitlm", "replitlm.data.pipeline")]
    for name in scripts:
        path = bin_dir / name if (bin_dir / name).exists() else shutil.which(name)
        if path is None:
            sys.exit(f"error: {name} is not installed: run `make install` (or pip install -e .) first")
        rows.append((f"{name} --help", [str(path), "--help"]))
    rows += [(f"import {m} (avoided)", [py, "-c", f"import {m}"]) for m in ("torch", "transformers")]
    base = None
    print(f"{'':<36}{'seconds':>9}{'x baseline':>12}")
    for label, command in rows:
        t = seconds(command, args.repeat)
        base = base or t
        print(f"{label:<36}{t:>9.2f}{t / base:>12.1f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
