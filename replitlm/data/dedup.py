"""Exact and near deduplication.

Exact: a 128-bit content digest per kept document. Near: MinHash signatures (datasketch) over shingles of
`shingle` consecutive token ids, and an LSH index at Jaccard `threshold` (0.7 by default, as BigCode): a
document is dropped when the index already holds one similar enough. Signatures are computed in the
workers; the index lives in the main process and sees documents in input order, so results are
deterministic.
"""

from __future__ import annotations

import functools
import hashlib
import operator

import numpy as np
from datasketch import LeanMinHash, MinHash, MinHashLSH

from replitlm.data.decontam import ngram_hashes


def content_digest(content: bytes) -> bytes:
    """128-bit digest of a document's UTF-8 bytes: SHA-256, truncated (with the SHA instructions of
    current x86 and ARM server CPUs, which OpenSSL uses, about twice as fast as BLAKE2b here)."""
    return hashlib.sha256(content).digest()[:16]


@functools.cache
def _permutations(num_perm: int) -> tuple[np.ndarray, np.ndarray]:
    """datasketch's default permutations (seed 1), drawn once rather than for every document."""
    return MinHash(num_perm=num_perm).permutations


def minhash_signature(tokens: np.ndarray, num_perm: int, shingle: int) -> LeanMinHash:
    """MinHash of the set of token shingles (32-bit shingle hashes fed to datasketch).

    The values are hashes already, so they pass through unhashed: `operator.index` is the identity on
    ints, called from C (datasketch calls `hashfunc` once per value). Together with the permutations drawn
    once, ~20% less time than a plain `MinHash(num_perm, hashfunc=lambda v: v)`, with the same signature."""
    m = MinHash(
        num_perm=num_perm, hashfunc=operator.index, permutations=_permutations(num_perm), scheme="affine32"
    )
    shingles = (
        ngram_hashes(tokens, shingle) if len(tokens) >= shingle else ngram_hashes(tokens, len(tokens) or 1)
    )
    values = np.unique(shingles & np.uint64(0xFFFFFFFF))
    if len(values):
        m.update_batch(values.tolist())
    return LeanMinHash(m)


class DigestSet:
    """The content digests seen so far, by their first 64 bits: a sorted array, plus a set of the recent ones
    that is merged into it every MERGE digests.

    ~8 bytes per file where a Python set of the digests costs ~150, so exact dedup over 10**8 files needs
    ~1 GB, not 15. A file is wrongly taken for a duplicate only if two different files' SHA-256 agree in 64
    bits: about n**2 / 2**65 such pairs expected among n files, 3e-4 for 10**8.
    """

    MERGE = 1 << 18  # the recent set's size (~20 MB) against the cost of a merge (a copy of the array)

    def __init__(self) -> None:
        self.merged = np.empty(0, dtype=np.uint64)
        self.recent: set[int] = set()

    def add(self, digest: bytes) -> bool:
        """Remember the digest; False if it was seen before."""
        key = int.from_bytes(digest[:8], "little")
        if key in self.recent:
            return False
        at = int(self.merged.searchsorted(np.uint64(key)))  # (a Python int would convert the whole array)
        if at < len(self.merged) and int(self.merged[at]) == key:
            return False
        self.recent.add(key)
        if len(self.recent) >= self.MERGE:
            recent = np.sort(np.fromiter(self.recent, dtype=np.uint64, count=len(self.recent)))
            # two sorted runs: the stable sort (timsort here) merges them in linear time
            self.merged = np.sort(np.concatenate([self.merged, recent]), kind="stable")
            self.recent.clear()
        return True

    def __len__(self) -> int:
        return len(self.merged) + len(self.recent)


class Deduplicator:
    def __init__(self, exact: bool, near: bool, threshold: float = 0.7, num_perm: int = 128) -> None:
        self.exact, self.near = exact, near
        self.seen = DigestSet()
        self.lsh = MinHashLSH(threshold=threshold, num_perm=num_perm) if near else None

    def check(self, digest: bytes, signature: LeanMinHash | None) -> str | None:
        """A drop reason for a duplicate, else None (and the document is remembered)."""
        if self.exact and not self.seen.add(digest):
            return "exact_duplicate"
        if self.lsh is not None and signature is not None:
            if self.lsh.query(signature):
                return "near_duplicate"
            self.lsh.insert(digest, signature)
        return None
