"""Exact and near deduplication."""

from __future__ import annotations

import numpy as np
import pytest

from replitlm.data.decontam import ngram_hashes
from replitlm.data.dedup import (
    Deduplicator,
    band_keys,
    content_digest,
    lsh_bands,
    minhash_signatures,
    shingle_hashes,
)


def near_keys(doc: np.ndarray, threshold: float = 0.7) -> np.ndarray:
    """The band keys a pipeline worker sends for `doc` (128 permutations, 5-token shingles)."""
    return band_keys(minhash_signatures([doc], 128, 5), *lsh_bands(threshold, 128))[0]


def test_signatures_estimate_the_shingle_jaccard(tokenizer) -> None:
    """The share of equal signature entries estimates the Jaccard of the shingle sets, within the sampling
    error of 128 permutations (sd <= 0.045), on real files edited to known Jaccards; batched = one by one."""
    pairs = edited_copies(tokenizer)
    docs = [d for _, doc, copy, _ in pairs for d in (doc, copy)]
    signatures = minhash_signatures(docs, 128, 5)
    assert signatures.shape == (len(docs), 128) and signatures.dtype == np.uint32
    for k, (name, _, _, jaccard) in enumerate(pairs):
        estimate = float(np.mean(signatures[2 * k] == signatures[2 * k + 1]))
        assert abs(estimate - jaccard) < 0.15, (name, jaccard, estimate)
    assert np.array_equal(minhash_signatures(docs[:1], 128, 5)[0], signatures[0])
    short = np.array([7, 8, 9], dtype=np.uint32)  # shorter than a shingle: one shingle of the whole document
    assert len(shingle_hashes(short, 5)) == 1 and minhash_signatures([short], 16, 5).shape == (1, 16)


@pytest.mark.parametrize(("threshold", "expected"), [(0.7, (14, 9)), (0.85, (8, 16)), (0.5, (25, 5))])
def test_lsh_bands_are_the_ones_datasketch_would_choose(threshold: float, expected: tuple[int, int]) -> None:
    # datasketch.lsh._optimal_param(threshold, 128, 0.5, 0.5) gives these (checked when datasketch was the engine)
    assert lsh_bands(threshold, 128) == expected


def test_deduplicator_drops_copies_and_near_copies() -> None:
    rng = np.random.default_rng(5)
    doc = rng.integers(0, 32768, 400).astype(np.uint32)
    near = doc.copy()
    near[200] += 1  # one token changed: most shingles shared
    other = rng.integers(0, 32768, 400).astype(np.uint32)
    dedup = Deduplicator(exact=True, near=True)
    verdicts = [dedup.check(content_digest(d.tobytes()), near_keys(d)) for d in (doc, doc, near, other)]
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


def shingle_jaccard(a: np.ndarray, b: np.ndarray, shingle: int = 5) -> float:
    sa, sb = set(ngram_hashes(a, shingle).tolist()), set(ngram_hashes(b, shingle).tolist())
    return len(sa & sb) / len(sa | sb)


def edited_copies(tokenizer) -> list[tuple[str, np.ndarray, np.ndarray, float]]:
    """(name, file, edited copy, measured shingle Jaccard) of real stdlib files: the copy keeps the file's
    first part and replaces the rest with another file's tokens, for Jaccards just above and well below the
    default threshold 0.7 (and above the 0.3 a threshold read as a distance would use)."""
    from tests.conftest import STDLIB

    names = ["textwrap.py", "lzma.py", "profile.py", "bisect.py"]
    files = {
        n: np.asarray(tokenizer.encode_batch([(STDLIB / n).read_text()])[0], dtype=np.uint32) for n in names
    }
    filler = np.asarray(tokenizer.encode_batch([(STDLIB / "shlex.py").read_text()])[0], dtype=np.uint32)
    out = []
    for name, keep in zip(names, (0.93, 0.92, 0.66, 0.62), strict=True):
        doc = files[name]
        cut = int(len(doc) * keep)
        copy = np.concatenate([doc[:cut], filler[: len(doc) - cut]])
        out.append((name, doc, copy, shingle_jaccard(doc, copy)))
    return out


def test_near_dedup_decides_at_its_threshold_on_real_files_edited_to_a_measured_jaccard(tokenizer) -> None:
    for name, doc, copy, jaccard in edited_copies(tokenizer):
        dedup = Deduplicator(exact=True, near=True)  # keys banded at 0.7 by near_keys
        assert dedup.check(content_digest(doc.tobytes()), near_keys(doc)) is None
        verdict = dedup.check(content_digest(copy.tobytes()), near_keys(copy))
        if jaccard >= 0.8:  # above 0.7 by a margin the 128-permutation LSH resolves
            assert verdict == "near_duplicate", (name, jaccard)
        else:
            assert 0.4 <= jaccard <= 0.55, (name, jaccard)  # below 0.7, above a mistaken 0.3
            assert verdict is None, (name, jaccard)


def test_near_dedup_off_keeps_near_copies_and_takes_documents_without_signatures() -> None:
    rng = np.random.default_rng(6)
    doc = rng.integers(0, 32768, 400).astype(np.uint32)
    near = doc.copy()
    near[100] += 1
    exact_only = Deduplicator(exact=True, near=False)
    for d in (doc, near):  # signatures computed or not, near-dedup off drops nothing but exact copies
        assert exact_only.check(content_digest(d.tobytes()), near_keys(d)) is None
    assert exact_only.check(content_digest(doc.tobytes()), None) == "exact_duplicate"
    both = Deduplicator(exact=True, near=True)
    assert both.check(content_digest(doc.tobytes()), None) is None  # a document without a signature
    assert both.check(content_digest(near.tobytes()), near_keys(near)) is None


def test_near_dedup_memory_per_kept_file(monkeypatch) -> None:
    """Near-dedup remembers 8 bytes per band (14 at the defaults) of each kept file: ~112 bytes, not the
    ~4.7 KB of datasketch's LSH index."""
    import tracemalloc

    from replitlm.data.dedup import DigestSet

    monkeypatch.setattr(DigestSet, "MERGE", 4096)
    rng = np.random.default_rng(8)
    keys = rng.integers(0, 2**63, size=(3000, 14), dtype=np.uint64)  # unrelated files: every one is kept
    digests = [content_digest(k.to_bytes(4, "little")) for k in range(len(keys))]
    dedup = Deduplicator(exact=False, near=True)
    tracemalloc.start()
    for digest, row in zip(digests, keys, strict=True):
        assert dedup.check(digest, row) is None
    size, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert size / len(keys) < 14 * 40, size / len(keys)


def test_repeated_shingles_do_not_change_a_signature() -> None:
    """Shingle hashes go to rensa with their repeats (a minimum ignores them): the same as the set's."""
    unit = np.random.default_rng(9).integers(0, 32768, 50).astype(np.uint32)
    repeated = np.tile(unit, 6)  # the same 5-token windows again and again
    hashes = shingle_hashes(repeated, 5)
    assert len(np.unique(hashes)) < len(hashes)
    import rensa

    distinct = np.unique(hashes)
    offsets = np.array([0, len(distinct)], dtype=np.uint64)
    of_set = rensa.RMinHash.digest_matrix_from_flat_token_hashes(distinct, offsets, 128, 1).to_rows()
    assert np.array_equal(minhash_signatures([repeated], 128, 5), np.array(of_set, dtype=np.uint32))


def test_band_key_lookups_see_the_keys_merged_away(monkeypatch) -> None:
    """After a merge a document's band keys live in the sorted array: a near copy must still be found."""
    from replitlm.data.dedup import DigestSet

    monkeypatch.setattr(DigestSet, "MERGE", 16)
    seen = DigestSet()
    rng = np.random.default_rng(3)
    batches = [rng.integers(0, 2**64, 14, dtype=np.uint64) for _ in range(40)]
    for keys in batches:
        assert not seen.contains_any(keys)
        seen.add_keys(keys)
    assert len(seen.merged) > 14 * 30  # the early documents' keys were merged
    for keys in batches[:5]:
        assert seen.contains_any(keys[[3]]) and seen.contains_any(np.array([1, keys[9]], dtype=np.uint64))
    assert not seen.contains_any(rng.integers(0, 2**64, 14, dtype=np.uint64))


def test_band_keys_of_different_documents_do_not_collide() -> None:
    """A band key stands for its band's rows: 280,000 keys of 20,000 unrelated signatures are all distinct
    (a 64-bit mix gives ~2e-9 expected collisions; one that kept half its bits would give several)."""
    rng = np.random.default_rng(11)
    signatures = rng.integers(0, 2**32, (20_000, 128), dtype=np.uint64).astype(np.uint32)
    keys = band_keys(signatures, *lsh_bands(0.7, 128))
    assert keys.shape == (20_000, 14) and len(np.unique(keys)) == keys.size
    other = signatures[:1].copy()
    other[0, 9:] += 1  # the first band's rows kept, every other band's changed
    a, b = band_keys(signatures[:1], 14, 9)[0], band_keys(other, 14, 9)[0]
    assert a[0] == b[0] and (a[1:] != b[1:]).all()


def test_no_documents_no_signatures() -> None:
    assert minhash_signatures([], 128, 5).shape == (0, 128)
