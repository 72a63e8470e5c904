"""Prompt/response examples → training samples: the loss falls on the response only, EOS ends it.

Each example becomes `prompt_ids + response_ids + [EOS]` with labels -100 over the prompt, so the model learns
to answer, not to write questions; the EOS teaches it to stop. Prompt and response are tokenized apart, so the
boundary is exactly where the template puts it (replit's tokenizer adds no prefix space).

Examples longer than `max_seq_len`:
- `overlong: truncate` (default) keeps the whole prompt and cuts the response's end (its EOS is lost);
- `overlong: drop` leaves them out;
- either way an example whose prompt alone fills `max_seq_len` is left out (no response token would remain).
Every case is counted in the report the trainer prints.

With `packing`, examples (in a seeded shuffled order) fill `max_seq_len`-token sequences greedily, each
example whole; `sequence_id` numbers the examples in a sequence so attention (and ALiBi) stays inside each one.

Instruction sets are small (thousands to a few hundred thousand examples): they are read and tokenized once, in
memory, by every rank in the same order, and served by a map-style dataset. Composer's distributed sampler
and its dataloader spin on resume then give a restarted run the exact batches it had not seen.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from replitlm.data.instruct import InstructError, PromptTemplate, iter_records, to_prompt_response
from replitlm.data.shards import read_local_mds
from replitlm.training.data import DataError, TokenCollator, check_local_dataset, torch_dataloader
from replitlm.training.schema import DatasetSection, LoaderSection


@dataclass
class FinetuningReport:
    examples: int = 0  # kept
    bad: list[str] = field(default_factory=list)  # "file:line: problem", skipped
    truncated: int = 0
    dropped_overlong: int = 0
    dropped_prompt_too_long: int = 0
    sequences: int = 0
    tokens: int = 0
    response_tokens: int = 0  # tokens that carry loss

    def lines(self, where: str, max_seq_len: int) -> list[str]:
        fill = self.tokens / max(1, self.sequences * max_seq_len)
        out = [
            f"{where}: {self.examples} examples -> {self.sequences} sequences of <= {max_seq_len} tokens "
            f"({self.tokens} tokens, {self.response_tokens} with loss, {fill:.0%} of the sequence slots used)"
        ]
        if self.truncated:
            out.append(f"  {self.truncated} examples longer than max_seq_len: response truncated")
        if self.dropped_overlong:
            out.append(
                f"  {self.dropped_overlong} examples longer than max_seq_len: dropped (overlong: drop)"
            )
        if self.dropped_prompt_too_long:
            out.append(
                f"  {self.dropped_prompt_too_long} examples whose prompt alone fills max_seq_len: dropped"
            )
        if self.bad:
            out.append(f"  {len(self.bad)} bad records skipped (strict: true stops at the first):")
            out += [f"    {problem}" for problem in self.bad[:10]]
            if len(self.bad) > 10:
                out.append(f"    ... and {len(self.bad) - 10} more")
        return out


def read_examples(ds: DatasetSection, where: str) -> Iterator[tuple[str, Any]]:
    """(location, record) from a JSON/JSONL file, a datasets folder or hub id, or prompt/response MDS shards."""
    if ds.path is not None:
        try:
            yield from iter_records(ds.path, ds.split or "train")
        except InstructError as exc:
            raise DataError(f"{where}.path: {exc}") from exc
        except FileNotFoundError as exc:
            raise DataError(f"{where}.path: {ds.path}: {exc.strerror or exc}") from exc
        return
    yield from _mds_records(ds, where)


def _mds_records(ds: DatasetSection, where: str) -> Iterator[tuple[str, Any]]:
    check_local_dataset(ds.local, ds.remote, ds.split, where)
    # Every rank reads every example, in order (the loader shards the packed samples, not the records).
    for i, sample in enumerate(_mds_samples(ds)):
        if "prompt" not in sample or "response" not in sample:
            raise DataError(
                f"{where}: sample {i} has columns {sorted(sample)}, expected prompt and response (make the "
                "shards with data_prep/convert_instruct_dataset.py)"
            )
        yield f"{ds.local or ds.remote}[{i}]", {"prompt": sample["prompt"], "response": sample["response"]}


def _mds_samples(ds: DatasetSection) -> Iterator[dict[str, Any]]:
    """Local shards are read directly; remote ones through a StreamingDataset, which downloads them."""
    if ds.remote is None:
        yield from read_local_mds(ds.local, ds.split)
        return
    from streaming import StreamingDataset

    dataset = StreamingDataset(local=ds.local, remote=ds.remote, split=ds.split, shuffle=False, batch_size=1)
    for i in range(dataset.num_samples):  # by global index: every rank gets every sample
        yield dataset.get_item(i)


def encode_example(
    prompt_ids: list[int], response_ids: list[int], eos_id: int, max_seq_len: int, overlong: str
) -> tuple[np.ndarray, np.ndarray] | str:
    """(tokens, labels) for one example, or why it was left out ('prompt_too_long' | 'overlong')."""
    if len(prompt_ids) >= max_seq_len:
        return "prompt_too_long"
    tokens = prompt_ids + response_ids + [eos_id]
    labels = [-100] * len(prompt_ids) + response_ids + [eos_id]
    if len(tokens) > max_seq_len:
        if overlong == "drop":
            return "overlong"
        tokens, labels = tokens[:max_seq_len], labels[:max_seq_len]
    return np.asarray(tokens, dtype=np.int32), np.asarray(labels, dtype=np.int32)


def pack(examples: list[tuple[np.ndarray, np.ndarray]], max_seq_len: int) -> list[dict[str, np.ndarray]]:
    """Whole examples, in order, into sequences of at most max_seq_len tokens, with per-example sequence_id."""
    sequences: list[dict[str, np.ndarray]] = []
    current: list[tuple[np.ndarray, np.ndarray]] = []
    used = 0

    def flush() -> None:
        if current:
            sequences.append(
                {
                    "tokens": np.concatenate([t for t, _ in current]),
                    "labels": np.concatenate([lab for _, lab in current]),
                    "sequence_id": np.concatenate(
                        [np.full(len(t), i, dtype=np.int32) for i, (t, _) in enumerate(current)]
                    ),
                }
            )

    for tokens, labels in examples:
        if used + len(tokens) > max_seq_len:
            flush()
            current, used = [], 0
        current.append((tokens, labels))
        used += len(tokens)
    flush()
    return sequences


def build_samples(
    ds: DatasetSection, tokenizer: Any, max_seq_len: int, where: str
) -> tuple[list[dict[str, np.ndarray]], FinetuningReport]:
    """Read, check, tokenize, cut and (optionally) pack every example of a finetuning dataset."""
    defaults = PromptTemplate()
    template = PromptTemplate(
        ds.prompt_template or defaults.with_input, ds.prompt_template_no_input or defaults.no_input
    )
    report = FinetuningReport()
    pairs: list[tuple[str, str]] = []
    for location, record in read_examples(ds, where):
        try:
            pairs.append(to_prompt_response(record, template))
        except InstructError as exc:
            if ds.strict:
                raise DataError(f"{location}: {exc} ({where}.dataset.strict is true)") from None
            report.bad.append(f"{location}: {exc}")
    if not pairs:
        raise DataError(f"{where}: no usable prompt/response examples ({len(report.bad)} bad records)")
    eos_id = tokenizer.eos_token_id
    prompts = tokenizer.encode_batch([p for p, _ in pairs])
    responses = tokenizer.encode_batch([r for _, r in pairs])
    examples = []
    for prompt_ids, response_ids in zip(prompts, responses, strict=True):
        encoded = encode_example(prompt_ids, response_ids, eos_id, max_seq_len, ds.overlong)
        if encoded == "prompt_too_long":
            report.dropped_prompt_too_long += 1
        elif encoded == "overlong":
            report.dropped_overlong += 1
        else:
            report.truncated += len(prompt_ids) + len(response_ids) + 1 > max_seq_len
            examples.append(encoded)
    report.examples = len(examples)
    if ds.packing:
        random.Random(ds.shuffle_seed).shuffle(
            examples
        )  # mixes lengths within sequences; same order on every rank
        samples = pack(examples, max_seq_len)
    else:
        samples = [{"tokens": tokens, "labels": labels} for tokens, labels in examples]
    report.sequences = len(samples)
    report.tokens = sum(len(s["tokens"]) for s in samples)
    report.response_tokens = sum(int((s["labels"] >= 0).sum()) for s in samples)
    return samples, report


class FinetuningDataset(Dataset):
    def __init__(self, samples: list[dict[str, np.ndarray]]) -> None:
        self.samples = samples

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        return self.samples[index]


def build_finetuning_dataloader(
    loader: LoaderSection,
    tokenizer: Any,
    max_seq_len: int,
    batch_size: int,
    collator: TokenCollator,
    train: bool,
) -> DataLoader:
    from composer.utils import dist

    where = "train_loader" if train else "eval_loader"
    ds = loader.dataset
    samples, report = build_samples(ds, tokenizer, max_seq_len, where)
    if dist.get_global_rank() == 0:
        print("\n".join(report.lines(where, max_seq_len)), flush=True)
    dataset = FinetuningDataset(samples)
    shuffle = ds.shuffle and train
    sampler = torch.utils.data.DistributedSampler(
        dataset,
        num_replicas=dist.get_world_size(),
        rank=dist.get_global_rank(),
        shuffle=shuffle,
        seed=ds.shuffle_seed,
        drop_last=loader.drop_last if train else False,
    )
    return torch_dataloader(dataset, loader, batch_size, collator, train, sampler)
