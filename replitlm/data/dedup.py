"""Exact and near deduplication.

Exact: a 128-bit content digest per kept document. Near: MinHash signatures (rensa, in Rust) over shingles of
`shingle` consecutive token ids, cut into LSH bands at Jaccard `threshold` (0.7 by default, as BigCode): a
document is dropped when one of its bands matches a band of a document kept before it. Signatures and band
keys are computed in the workers, a batch at a time; the main process only looks up and remembers 8 bytes
per band of each kept document (a sorted array plus a recent set), in input order, so results are
deterministic and near-dedup costs ~8 x bands bytes per kept file (~100 B at the defaults) where datasketch's
LSH index took ~4.7 KB.

rensa's signatures are not datasketch's (another hash family): the two must never share an index, and the
pinned rensa version fixes them (0.5 rejects 0.4's).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence

import numpy as np
import rensa

from replitlm.data.decontam import ngram_hashes

MINHASH_SEED = 1  # part of the signatures' definition: changing it changes which documents near-dedup drops


def content_digest(content: bytes) -> bytes:
    """128-bit digest of a document's UTF-8 bytes: SHA-256, truncated (with the SHA instructions of
    current x86 and ARM server CPUs, which OpenSSL uses, about twice as fast as BLAKE2b here)."""
    return hashlib.sha256(content).digest()[:16]


def shingle_hashes(tokens: np.ndarray, shingle: int) -> np.ndarray:
    """The 64-bit hashes of a document's token shingles (the whole document when it is shorter). Repeats stay:
    a MinHash is a minimum per permutation, which a repeat cannot change (de-duplicating them first cost ~10%
    of the pipeline's time)."""
    size = shingle if len(tokens) >= shingle else len(tokens) or 1
    return ngram_hashes(tokens, size)


def minhash_signatures(docs: Sequence[np.ndarray], num_perm: int, shingle: int) -> np.ndarray:
    """[len(docs), num_perm] uint32: the MinHash signature of each document's set of token shingles, all in
    one call into rensa (its buffer API: one flat array of hashes and the row offsets)."""
    sets = [shingle_hashes(doc, shingle) for doc in docs]
    offsets = np.zeros(len(sets) + 1, dtype=np.uint64)
    np.cumsum([len(h) for h in sets], out=offsets[1:])
    flat = np.concatenate(sets) if sets else np.empty(0, dtype=np.uint64)
    matrix = rensa.RMinHash.digest_matrix_from_flat_token_hashes(flat, offsets, num_perm, MINHASH_SEED)
    return np.array(matrix.to_rows(), dtype=np.uint32).reshape(len(docs), num_perm)


@functools.cache
def lsh_bands(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows per band) with bands * rows <= num_perm that minimise the probability of missing a pair
    above `threshold` plus that of flagging one below it (equal weights), as datasketch's MinHashLSH chooses.

    A pair of Jaccard s shares at least one band with probability 1 - (1 - s**r)**b."""
    grid = np.linspace(0.0, 1.0, 2001)
    best, best_error = (1, num_perm), float("inf")
    for bands in range(1, num_perm + 1):
        for rows in range(1, num_perm // bands + 1):
            hit = 1 - (1 - grid**rows) ** bands
            below, above = grid <= threshold, grid >= threshold
            error = np.trapezoid(hit[below], grid[below]) + np.trapezoid(1 - hit[above], grid[above])
            if error < best_error:
                best, best_error = (bands, rows), error
    return best


def band_keys(signatures: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """[n, bands] uint64: one 64-bit key per band of each signature (the band's index mixed in, so equal
    values in different bands never match)."""
    n = len(signatures)
    cut = signatures[:, : bands * rows].reshape(n, bands, rows).astype(np.uint64)
    keys = np.broadcast_to(
        np.arange(bands, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15), (n, bands)
    ).copy()
    with np.errstate(over="ignore"):
        for column in range(rows):
            keys = (keys ^ cut[:, :, column]) * np.uint64(0xBF58476D1CE4E5B9)
            keys ^= keys >> np.uint64(31)
    return keys


class DigestSet:
    """64-bit keys seen so far (content digests by their first 64 bits, or LSH band keys): a sorted array,
    plus a set of the recent ones that is merged into it every MERGE keys.

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
        if self.contains(key):
            return False
        self.add_key(key)
        return True

    def contains(self, key: int) -> bool:
        if key in self.recent:
            return True
        at = int(self.merged.searchsorted(np.uint64(key)))  # (a Python int would convert the whole array)
        return at < len(self.merged) and int(self.merged[at]) == key

    def contains_any(self, keys: np.ndarray) -> bool:
        """Whether any of these uint64 keys was added (one vectorised lookup for a document's band keys)."""
        if not self.recent.isdisjoint(keys.tolist()):
            return True
        at = self.merged.searchsorted(keys)
        inside = at < len(self.merged)
        return bool(np.any(self.merged[at[inside]] == keys[inside]))

    def add_keys(self, keys: np.ndarray) -> None:
        self.recent.update(keys.tolist())
        self._merge_if_full()

    def add_key(self, key: int) -> None:
        self.recent.add(key)
        self._merge_if_full()

    def _merge_if_full(self) -> None:
        if len(self.recent) >= self.MERGE:
            recent = np.sort(np.fromiter(self.recent, dtype=np.uint64, count=len(self.recent)))
            # two sorted runs: the stable sort (timsort here) merges them in linear time
            self.merged = np.sort(np.concatenate([self.merged, recent]), kind="stable")
            self.recent.clear()

    def __len__(self) -> int:
        return len(self.merged) + len(self.recent)


class Deduplicator:
    """Exact dedup by content digest, near dedup by the LSH band keys the workers computed (band_keys)."""

    def __init__(self, exact: bool, near: bool) -> None:
        self.exact = exact
        self.seen = DigestSet()
        self.bands = DigestSet() if near else None  # the band keys of every kept document

    def check(self, digest: bytes, keys: np.ndarray | None) -> str | None:
        """A drop reason for a duplicate, else None (and the document is remembered). `keys`: the document's
        band keys (band_keys), or None when near-dedup did not look at it."""
        if self.exact and not self.seen.add(digest):
            return "exact_duplicate"
        if self.bands is not None and keys is not None:
            if self.bands.contains_any(keys):
                return "near_duplicate"
            self.bands.add_keys(keys)
        return None
