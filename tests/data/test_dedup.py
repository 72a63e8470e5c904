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


def test_digest_set_is_a_set_across_merges(monkeypatch) -> None:
    from replitlm.data.dedup import DigestSet

    monkeypatch.setattr(DigestSet, "MERGE", 64)  # many merges
    rng = np.random.default_rng(6)
    digests = [content_digest(bytes([k % 251, k // 251])) for k in rng.integers(0, 3000, 5000)]
    digests += [bytes([255] * 8) + bytes(8), bytes(16)]  # the extremes of the 64-bit keys
    seen, reference = DigestSet(), set()
    for digest in digests + digests[:100]:
        assert seen.add(digest) == (digest not in reference), digest
        reference.add(digest)
    assert len(seen) == len(reference) and len(seen.merged) > len(seen.recent)


def test_digest_set_memory_per_digest(monkeypatch) -> None:
    import tracemalloc

    from replitlm.data.dedup import DigestSet

    monkeypatch.setattr(DigestSet, "MERGE", 2048)
    digests = [content_digest(k.to_bytes(4, "little")) for k in range(20 * DigestSet.MERGE)]
    tracemalloc.start()
    seen = DigestSet()
    for digest in digests:
        seen.add(digest)
    size, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert size / len(digests) < 40, size / len(digests)  # a set of the digests: ~150 bytes each
