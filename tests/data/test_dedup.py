"""Exact and near deduplication."""

from __future__ import annotations

import numpy as np
from datasketch import MinHash

from replitlm.data.decontam import ngram_hashes
from replitlm.data.dedup import Deduplicator, content_digest, minhash_signature


def test_minhash_signature_is_datasketchs_minhash_of_the_shingle_hashes() -> None:
    tokens = np.random.default_rng(4).integers(0, 32768, 300).astype(np.uint32)
    for doc in (tokens, tokens[:3]):  # shorter than a shingle: one shingle of the whole document
        shingle = min(5, len(doc))
        reference = MinHash(num_perm=64, hashfunc=lambda value: value)
        reference.update_batch(np.unique(ngram_hashes(doc, shingle) & np.uint64(0xFFFFFFFF)).tolist())
        assert np.array_equal(minhash_signature(doc, 64, 5).hashvalues, reference.hashvalues)


def test_deduplicator_drops_copies_and_near_copies() -> None:
    rng = np.random.default_rng(5)
    doc = rng.integers(0, 32768, 400).astype(np.uint32)
    near = doc.copy()
    near[200] += 1  # one token changed: most shingles shared
    other = rng.integers(0, 32768, 400).astype(np.uint32)
    dedup = Deduplicator(exact=True, near=True)
    verdicts = [
        dedup.check(content_digest(d.tobytes()), minhash_signature(d, 128, 5))
        for d in (doc, doc, near, other)
    ]
    assert verdicts == [None, "exact_duplicate", "near_duplicate", None]
