"""`make quickstart`: the whole job on a built-in default, on a CPU, offline, in a few minutes.

Every step runs the same command a user would run (each is printed first), and everything goes under
runs/quickstart/ of the repository:
  1. corpus/     real code: the Python standard library's own sources on this machine (symlinks)
  2. tokenizer/  a 4096-piece SentencePiece tokenizer trained on it (data_prep/train_tokenizer.py)
  3. mds/        filtered, deduplicated, tokenized, packed MDS shards, train/ and val/ (convert_code_dataset.py)
  4. checkpoints/, hf/   a tiny ReplitLM trained from scratch (train/train.py yamls/quickstart/tiny-cpu.yaml),
                 evaluated on the held-out split, exported as a Hugging Face folder
  5. eval/       loss and perplexity per language on mds/val (eval/eval.py --perplexity)
  6. a completion sampled from the exported folder (scripts/generate.py)
  7. lora/adapter/   a LoRA adapter on hf/, instruct-tuned on pairs made from the corpus: each documented
                 function's signature and docstring as the prompt, its body as the response
                 (train/train.py yamls/quickstart/lora-tiny-cpu.yaml)
  8. lora/merged/    the adapter merged into the base (scripts/merge_lora.py), and a completion from it

Rerunning skips finished steps (training resumes from its last checkpoint); --fresh starts over.

    python scripts/quickstart.py [--fresh] [--corpus-mb 24] [key=value ... training overrides]
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import replitlm
from replitlm.cli import fail, parser
from replitlm.data.code_pairs import stdlib_sources

# The clone this package runs from (an editable install): the YAMLs and the entry files live there.
REPO = Path(replitlm.__file__).resolve().parents[1]
PROMPT = "def read_config(path):\n"
LORA_PROMPT = (
    'def read_lines(path):\n    """Return the lines of the text file at path, without line endings."""\n'
)


def build_corpus(folder: Path, megabytes: float) -> None:
    """Link the stdlib's .py files (not site-packages, not tests) into `folder`, in sorted order, up to a size."""
    budget, tmp = int(megabytes * 1e6), folder.with_name(folder.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for path, rel in stdlib_sources():
        size = path.stat().st_size
        if size > budget:
            break
        budget -= size
        target = tmp / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(path)
    tmp.rename(folder)


def step(title: str, command: list) -> None:
    command = [str(part) for part in command]
    print(f"\n== {title}\n$ {shlex.join(command)}", flush=True)
    start = time.perf_counter()
    result = subprocess.run(command, cwd=REPO)
    if result.returncode != 0:
        sys.exit(f"quickstart: '{title}' failed (exit code {result.returncode}); its output is above")
    print(f"({time.perf_counter() - start:.0f} s)", flush=True)


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__)
    p.add_argument("--fresh", action="store_true", help="delete the run folder first")
    p.add_argument(
        "--run-dir",
        type=Path,
        default=Path("runs/quickstart"),
        help="default: runs/quickstart (in the repository)",
    )
    p.add_argument("--corpus-mb", type=float, default=24, help="MB of stdlib sources to use (default 24)")
    p.add_argument(
        "--tokenizer-mb", type=float, default=8, help="MB of them to train the tokenizer on (default 8)"
    )
    p.add_argument(
        "--lora-override",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an override for the LoRA step's YAML (repeatable)",
    )
    p.add_argument("overrides", nargs="*", help="key=value overrides for the training YAML")
    args = p.parse_args(argv)
    if not (REPO / "yamls" / "quickstart").is_dir():
        return fail(
            f"{REPO} has no yamls/quickstart/: run the quickstart from a clone of the repository "
            "(pip install -e . there)"
        )
    os.chdir(REPO)  # a relative --run-dir is inside the repository, and the printed commands run from there
    run = args.run_dir
    if args.fresh:
        shutil.rmtree(run, ignore_errors=True)
    base_steps(run, args)
    lora_steps(run, args.lora_override)
    print(
        f"\nDone. Everything is under {run}/; the model loads with ReplitLMForCausalLM.from_pretrained('{run}/hf'), "
        f"the instruct-tuned one from '{run}/lora/merged'."
    )
    return 0


def base_steps(run: Path, args: argparse.Namespace) -> None:
    py = sys.executable
    corpus = run / "corpus"
    if not corpus.exists():
        print(f"== corpus: up to {args.corpus_mb:g} MB of the standard library's sources -> {corpus}")
        build_corpus(corpus, args.corpus_mb)
    tokenizer = run / "tokenizer"
    if not (tokenizer / "spiece.model").exists():
        step(
            "train a 4096-piece tokenizer",
            [
                py,
                "data_prep/train_tokenizer.py",
                "--input",
                corpus,
                "--out",
                tokenizer,
                "--vocab-size",
                4096,
                "--max-mb",
                args.tokenizer_mb,
            ],
        )
    mds = run / "mds"
    if not (mds / "train" / "index.json").exists():
        step(
            "filter, deduplicate, tokenize and pack into MDS shards",
            [
                py,
                "data_prep/convert_code_dataset.py",
                "--input",
                corpus,
                "--out",
                mds,
                "--tokenizer",
                tokenizer,
                "--max-seq-len",
                256,
                "--sequence-id",
                "--val-fraction",
                0.03,
                "--overwrite",
            ],
        )
    step(
        "train a tiny ReplitLM from scratch (resumes if interrupted), evaluate on val/, export to hf/",
        [py, "train/train.py", "yamls/quickstart/tiny-cpu.yaml", f"variables.run_dir={run}", *args.overrides],
    )
    step(
        "loss and perplexity per language on the held-out split",
        [py, "eval/eval.py", "--model", run / "hf", "--perplexity", mds / "val", "--out", run / "eval"],
    )
    step(
        "complete a prompt with the exported model",
        [
            py,
            "scripts/generate.py",
            str(run / "hf"),
            "--prompt",
            PROMPT,
            "--greedy",
            "--max-new-tokens",
            "48",
        ],
    )


def lora_steps(run: Path, overrides: list[str]) -> None:
    py, lora = sys.executable, run / "lora"
    step(
        "instruct-tune a LoRA adapter on the corpus's documented functions (resumes if interrupted)",
        [
            py,
            "train/train.py",
            "yamls/quickstart/lora-tiny-cpu.yaml",
            f"variables.run_dir={lora}",
            f"variables.base={run / 'hf'}",
            f"variables.data=functions:{run / 'corpus'}",
            *overrides,
        ],
    )
    step(
        "merge the adapter into the base model",
        [py, "scripts/merge_lora.py", "--adapter", lora / "adapter", "--out", lora / "merged"],
    )
    step(
        "complete a documented signature with the merged model",
        [
            py,
            "scripts/generate.py",
            lora / "merged",
            "--prompt",
            LORA_PROMPT,
            "--greedy",
            "--max-new-tokens",
            "48",
        ],
    )


if __name__ == "__main__":
    sys.exit(main())
