#!/usr/bin/env python
"""Evaluate a code model: sample completions for a benchmark, execute them in a sandbox, report pass@k.

    python eval/eval.py --model replit/replit-code-v1-3b --task humaneval --n 20 --k 1 10 --out runs/eval
    python eval/eval.py --model runs/quickstart/hf --task humaneval --limit 10 --n 1 --greedy --out runs/qs-eval
    python eval/eval.py --task humaneval --samples samples.jsonl            # score given completions only

With --model, samples go to OUT/<task>_samples.jsonl as they are generated (rerunning resumes; raising --n
adds samples), with the bigcode harness's settings by default: temperature 0.2, top_p 0.95, total length
512, its stop words, clean_up_tokenization_spaces=False, the prompt stripped. Then they are scored.

SAMPLES is JSONL with `task_id` and `completion` per line (several lines per problem for pass@k > 1). It
writes SAMPLES_results.jsonl (each line plus `passed` and `result`: 'passed', 'failed: ...', 'timed out')
and SAMPLES_summary.json, and prints the scores. Every sample runs in its own process group and temporary
folder under CPU, memory, file-size and process limits, without network where the OS allows it; as
root, also as an unprivileged uid on a read-only filesystem view (it prints which containment is in effect).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from replitlm.cli import fail, parser
from replitlm.evaluation.options import OptionsError, split_config_argv, yaml_defaults
from replitlm.evaluation.sandbox import containment
from replitlm.evaluation.score import score_file
from replitlm.evaluation.tasks import TASKS, TaskError, load_task

# Loading a model or adapter fails with these for user errors (a bad path, no CUDA for --load-in, ...).
MODEL_ERRORS = (TaskError, OSError, ValueError, RuntimeError, ImportError)


def main(argv: list[str] | None = None) -> int:
    p = parser(
        __doc__,
        usage="eval.py [OPTIONS.yaml [key=value ...]] [--task TASK] [--model M | --samples F | --canonical] ...",
    )
    p.add_argument("--task", choices=sorted(TASKS), help="benchmark (not needed with --perplexity)")
    p.add_argument(
        "--perplexity", type=Path, help="with --model: loss and perplexity on this MDS val/ folder"
    )
    source = p.add_mutually_exclusive_group()
    source.add_argument("--model", help="model folder or hub id to sample from")
    source.add_argument("--samples", type=Path, help="score this JSONL of {task_id, completion} instead")
    source.add_argument(
        "--canonical", action="store_true", help="score the canonical solutions (checks the harness)"
    )
    gen = p.add_argument_group("generation (with --model)")
    gen.add_argument("--out", type=Path, default=Path("runs/eval"), help="output folder (default runs/eval)")
    gen.add_argument("--adapter", help="a PEFT (LoRA) adapter folder to apply to the model")
    gen.add_argument(
        "--load-in", choices=["8bit", "4bit"], help="quantize the weights while loading (bitsandbytes, CUDA)"
    )
    gen.add_argument("--n", type=int, default=1, help="samples per problem (default 1)")
    gen.add_argument("--batch-size", type=int, default=8, help="sequences generated together (default 8)")
    gen.add_argument("--temperature", type=float, default=0.2)
    gen.add_argument("--top-p", type=float, default=0.95)
    gen.add_argument("--greedy", action="store_true", help="greedy decoding (pass@1 with --n 1)")
    gen.add_argument("--max-length", type=int, default=512, help="prompt + completion tokens (default 512)")
    gen.add_argument("--limit", type=int, help="only the first N problems (a quick check)")
    gen.add_argument("--attn-impl", default="torch", help="attention backend (default torch)")
    p.add_argument(
        "--k", type=int, nargs="+", default=[1, 10, 100], help="pass@k to report (default 1 10 100)"
    )
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="samples executed at once (default: one per core; as root, 2 per core is up to 1.6x faster but a "
        "CPU-heavy sample may then time out on the wall clock)",
    )
    path, overrides, rest = split_config_argv(sys.argv[1:] if argv is None else argv)
    if path is not None:
        try:
            p.set_defaults(**yaml_defaults(p, path, overrides))
        except OptionsError as exc:
            return fail(str(exc))
    elif overrides:
        p.error(f"'{overrides[0]}': key=value overrides need an options YAML first")
    args = p.parse_args(rest)
    if args.perplexity is not None:
        if args.model is None:
            p.error("--perplexity needs --model")
        return report_perplexity(args)
    if args.task is None or not (args.model or args.samples or args.canonical):
        p.error("give --task and one of --model, --samples, --canonical (or --model with --perplexity)")
    if args.canonical:
        try:
            args.samples = write_canonical(args)
        except TaskError as exc:
            return fail(str(exc))
    if args.model is not None:
        try:
            args.samples = sample_from_model(args)
        except MODEL_ERRORS as exc:
            return fail(str(exc))
    if not args.samples.is_file():
        return fail(f"{args.samples}: no such samples file")
    print(f"sandbox: {containment().description}")
    try:
        summary = score_file(load_task(args.task), args.samples, args.k, args.workers)
    except TaskError as exc:
        return fail(str(exc))
    out = Path(f"{args.samples}_summary.json")
    out.write_text(json.dumps(summary, indent=2) + "\n")
    scores = "  ".join(f"{k}: {v:.4f}" for k, v in summary.items() if k.startswith("pass@"))
    print(
        f"{summary['task']} ({summary['language']}): {summary['problems']} problems, {summary['samples']} samples"
    )
    print(f"  {scores}   outcomes: {summary['outcomes']}")
    print(f"wrote {args.samples}_results.jsonl and {out}")
    if args.canonical:
        results = [
            json.loads(line) for line in Path(f"{args.samples}_results.jsonl").read_text().splitlines()
        ]
        failing = [(r["task_id"], r["result"][:120]) for r in results if not r["passed"]]
        print(f"canonical solutions failing: {len(failing)}" + "".join(f"\n  {t}: {m}" for t, m in failing))
    return 0


def report_perplexity(args: argparse.Namespace) -> int:
    from replitlm.evaluation.perplexity import perplexity

    try:
        model = load_model(args)
        result = perplexity(model, args.perplexity, args.batch_size, args.limit)
    except MODEL_ERRORS as exc:
        return fail(str(exc))
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / "perplexity.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'':<20}{'loss':>8}{'perplexity':>12}{'tokens':>12}")
    for name, r in [("overall", result["overall"]), *result["languages"].items()]:
        print(f"{name:<20}{r['loss']:>8.4f}{r['perplexity']:>12.2f}{r['tokens']:>12,}")
    print(f"wrote {out}")
    return 0


def write_canonical(args: argparse.Namespace) -> Path:
    task = load_task(args.task)
    out = args.out / f"{args.task}_canonical.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)
    problems = task.problems[: args.limit] if args.limit else task.problems
    out.write_text(
        "".join(
            json.dumps({"task_id": p.task_id, "completion": p.canonical_solution}) + "\n" for p in problems
        )
    )
    args.k = [1]
    return out


def load_model(args: argparse.Namespace):
    from replitlm.hub import hub_errors
    from replitlm.lora import load_for_inference

    with hub_errors(args.model, "--model"):
        return load_for_inference(args.model, args.adapter, args.load_in, attn_impl=args.attn_impl)


def sample_from_model(args: argparse.Namespace) -> Path:
    from replitlm import load_tokenizer
    from replitlm.evaluation.generate import eval_sampling, generate_samples
    from replitlm.hub import hub_errors

    model = load_model(args)
    with hub_errors(args.model, "--model", "tokenizer"):
        tokenizer = load_tokenizer(
            args.adapter if args.adapter and Path(args.adapter, "spiece.model").exists() else args.model
        )
    sampling = eval_sampling(args.temperature, args.top_p, args.greedy)
    out = args.out / f"{args.task}_samples.jsonl"
    task = load_task(args.task)
    return generate_samples(
        model, tokenizer, task, args.n, out, sampling, args.batch_size, args.max_length, args.limit
    )


if __name__ == "__main__":
    sys.exit(main())
