"""Train a SentencePiece Unigram tokenizer with replit-code-v1-3b's conventions.

Conventions (as in replit's spiece.model): <|unk|>=0, <|endoftext|>=1, <|pad|>=2, no BOS; user-defined pieces
for runs of 32..2 spaces (stored as "▁" runs), 8..1 tabs, "\\n\\n", "\\n", "\\r", "\\v", "\\f" and
<extra_id_0..99> (user-defined pieces bypass normalisation, which is how whitespace survives nmt_nfkc);
NFKC (nmt_nfkc) normalisation, no dummy prefix, no whitespace collapsing. The result is a folder that
`ReplitLMTokenizer.from_pretrained` (and `AutoTokenizer`, after `import replitlm`) loads.
"""

from __future__ import annotations

import io
import os
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path

import sentencepiece as spm

from replitlm.data.filters import decode
from replitlm.data.sources import iter_inputs, load

SPECIAL_PIECES = ("<|unk|>", "<|endoftext|>", "<|pad|>")


def replit_user_defined_symbols() -> list[str]:
    spaces = ["\u2581" * n for n in range(32, 1, -1)]
    tabs = ["\t" * n for n in range(8, 0, -1)]
    return spaces + tabs + ["\n\n", "\n", "\r", "\v", "\f"] + [f"<extra_id_{i}>" for i in range(100)]


def corpus_texts(inputs: list[str], max_total_bytes: int, max_file_bytes: int = 1_000_000) -> Iterator[str]:
    """Decodable documents from the inputs, until max_total_bytes of text has been yielded."""
    total = 0
    for doc in iter_inputs(inputs):
        doc = load(doc, max_file_bytes)
        if doc.drop or doc.data is None:
            continue
        text, reason = decode(doc.data)
        if reason or not text.strip():
            continue
        yield text
        total += len(text)
        if total >= max_total_bytes:
            return


def train_tokenizer(
    texts: Iterable[str], out: str | os.PathLike[str], vocab_size: int = 32768, threads: int = 2
) -> Path:
    """Train on `texts` and write a tokenizer folder to `out` (replaced atomically)."""
    from replitlm.tokenizer import ReplitLMTokenizer

    if vocab_size < 256:
        raise ValueError(f"--vocab-size must be at least 256, got {vocab_size}")
    model = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(texts),
            model_writer=model,
            model_type="unigram",
            vocab_size=vocab_size,
            normalization_rule_name="nmt_nfkc",
            add_dummy_prefix=False,
            remove_extra_whitespaces=False,
            split_by_whitespace=True,
            allow_whitespace_only_pieces=True,
            unk_id=0,
            eos_id=1,
            pad_id=2,
            bos_id=-1,
            unk_piece=SPECIAL_PIECES[0],
            eos_piece=SPECIAL_PIECES[1],
            pad_piece=SPECIAL_PIECES[2],
            user_defined_symbols=replit_user_defined_symbols(),
            max_sentence_length=1 << 20,
            num_threads=threads,
            minloglevel=2,
        )
    except RuntimeError as e:
        raise ValueError(
            f"SentencePiece training failed: {e} (a larger corpus or a smaller --vocab-size may help)"
        ) from e
    out = Path(out)
    staging = out.parent / f".{out.name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    (staging / "spiece.model").write_bytes(model.getvalue())
    ReplitLMTokenizer(vocab_file=str(staging / "spiece.model")).save_pretrained(staging)
    shutil.rmtree(out, ignore_errors=True)
    os.replace(staging, out)
    return out
