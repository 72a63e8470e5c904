"""A `tokenizers` (fast) tokenizer built from a replit-style SentencePiece Unigram model.

`ReplitLMTokenizer.save_pretrained` writes it as `tokenizer.json`, so that stock transformers, vLLM and TGI load
our tokenizers as `PreTrainedTokenizerFast` without `replitlm`. transformers' SpmConverter does not fit replit's
model (it adds a dummy prefix, pre-splits on whitespace, and would let NFKC turn tabs and newlines into spaces),
so the pipeline is built here from the model's own settings, following SentencePiece 0.2.3's encoder:

* normalizer: the model's precompiled NFKC charsmap, then " " → "▁". SentencePiece never normalizes text that
  matches a user-defined piece; nmt_nfkc would map "\\t", "\\n", "\\r", "\\f" to a space and drop "\\v", so
  those characters are swapped for markers around the charsmap.
* model: Unigram over every piece. SentencePiece scores a user-defined piece of n bytes as 0.1·(n − 1) (not its
  stored 0.0), which is what makes runs of spaces, tabs and newlines use the fewest pieces.
* decoder: "▁" → " "; <|unk|> decodes to SentencePiece's " ⁇ " and control tokens to "", as ReplitLMTokenizer
  does. No pre-tokenizer (a run of spaces and the word after it are segmented together: "▁▁▁▁" + "return"
  or "▁▁▁" + "▁return") and no post-processor (nothing is added around the ids).

The ids equal SentencePiece's except where SentencePiece breaks a tie by float32 rounding: its Viterbi adds
scores in float32 (and rebases them past 1e5), so two segmentations whose scores are equal, or differ by less
than the rounding, are chosen between by the running total, i.e. by what came earlier in the text (a run of 33
spaces becomes 2+31, 3+30 or 4+29 spaces depending on the file). Here every user-defined score is a multiple of
2^-23 and Unigram adds in float64, so sums are exact and a tie always goes the same way (the longest last
piece), which is also what SentencePiece picks whenever its rounding makes the candidates equal.
"""

from __future__ import annotations

import os

from sentencepiece import sentencepiece_model_pb2 as sp_pb2
from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers

SPACE = "\u2581"
NORMAL, UNKNOWN, CONTROL, USER_DEFINED = (
    sp_pb2.ModelProto.SentencePiece.NORMAL,
    sp_pb2.ModelProto.SentencePiece.UNKNOWN,
    sp_pb2.ModelProto.SentencePiece.CONTROL,
    sp_pb2.ModelProto.SentencePiece.USER_DEFINED,
)
# SentencePiece's 0.1 per extra byte of a user-defined piece, rounded to a multiple of 2^-23 (as float32 scores
# in [1, 32) are): float64 sums of such scores are exact, so segmentations of equal score tie exactly.
USER_DEFINED_STEP = round(0.1 * 2**23) / 2**23
# Marker for whitespace the charsmap must not see: MARK + one code character. MARK itself is escaped as
# MARK + "0", so every MARK in the escaped text starts a marker and decoding is unambiguous.
MARK = "\ue000"
CODES = "123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def read_model(path: str | os.PathLike[str]) -> sp_pb2.ModelProto:
    proto = sp_pb2.ModelProto()
    with open(path, "rb") as f:
        proto.ParseFromString(f.read())
    return proto


def check_convertible(proto: sp_pb2.ModelProto) -> None:
    """Refuse (naming them) the settings whose SentencePiece behaviour this converter does not reproduce."""
    trainer, norm = proto.trainer_spec, proto.normalizer_spec
    unsupported = {
        "model_type is not unigram": trainer.model_type != sp_pb2.TrainerSpec.UNIGRAM,
        "byte_fallback is on": trainer.byte_fallback,
        "treat_whitespace_as_suffix is on": trainer.treat_whitespace_as_suffix,
        "add_dummy_prefix is on": norm.add_dummy_prefix,
        "remove_extra_whitespaces is on": norm.remove_extra_whitespaces,
        "escape_whitespaces is off": not norm.escape_whitespaces,
        "it has a denormalizer": bool(proto.denormalizer_spec.precompiled_charsmap),
    }
    problems = [what for what, present in unsupported.items() if present]
    if problems:
        raise ValueError("cannot build a fast tokenizer for this SentencePiece model: " + ", ".join(problems))


def unigram_vocab(proto: sp_pb2.ModelProto) -> list[tuple[str, float]]:
    """(piece, score) for every id, scored as SentencePiece's encoder scores them."""
    normal = [p.score for p in proto.pieces if p.type == NORMAL]
    # Control and unknown pieces are not in SentencePiece's trie: a score far below any real segmentation keeps
    # Unigram from matching them inside (normalized) text. It also sets Unigram's unknown-character score
    # (lowest score − 10), which is harmless: a character without a piece of its own is in no piece at all.
    never = 100 * (min(normal) - 10)
    vocab = []
    for p in proto.pieces:
        if p.type == USER_DEFINED:
            vocab.append((p.piece, USER_DEFINED_STEP * (len(p.piece.encode()) - 1)))
        elif p.type == NORMAL:
            vocab.append((p.piece, p.score))
        else:
            vocab.append((p.piece, never))
    return vocab


def protected_characters(proto: sp_pb2.ModelProto, charsmap: normalizers.Normalizer) -> list[str]:
    """User-defined single characters that the charsmap would change (SentencePiece leaves them as they are)."""
    user_defined = [p.piece.replace(SPACE, " ") for p in proto.pieces if p.type == USER_DEFINED]
    changed = {c for piece in user_defined for c in piece if charsmap.normalize_str(c) != c}
    unprotectable = sorted(c for c in changed if c not in user_defined)
    if unprotectable:
        raise ValueError(
            f"cannot build a fast tokenizer: user-defined pieces contain {unprotectable!r}, which NFKC changes"
        )
    if len(changed) > len(CODES) or charsmap.normalize_str(MARK + "0" + CODES) != MARK + "0" + CODES:
        raise ValueError("cannot build a fast tokenizer: the charsmap changes the whitespace markers")
    return sorted(changed)


def build_normalizer(proto: sp_pb2.ModelProto) -> normalizers.Normalizer:
    steps: list[normalizers.Normalizer] = []
    blob = proto.normalizer_spec.precompiled_charsmap
    if blob:
        charsmap = normalizers.Precompiled(blob)
        protected = list(zip(protected_characters(proto, charsmap), CODES, strict=False))
        if protected:
            steps.append(normalizers.Replace(MARK, MARK + "0"))
            steps += [normalizers.Replace(c, MARK + code) for c, code in protected]
        steps.append(charsmap)
        if protected:
            steps += [normalizers.Replace(MARK + code, c) for c, code in protected]
            steps.append(normalizers.Replace(MARK + "0", MARK))
    steps.append(normalizers.Replace(" ", SPACE))
    return normalizers.Sequence(steps)


def build_decoder(proto: sp_pb2.ModelProto) -> decoders.Decoder:
    steps = [decoders.Replace(SPACE, " ")]
    for p in proto.pieces:
        if p.type == UNKNOWN:
            steps.append(decoders.Replace(p.piece, proto.trainer_spec.unk_surface))
        elif p.type == CONTROL:
            steps.append(decoders.Replace(p.piece, ""))
    return decoders.Sequence(steps)


def build_fast_tokenizer(
    path: str | os.PathLike[str], added: dict[int, AddedToken] | None = None
) -> Tokenizer:
    """The `tokenizers` equivalent of the SentencePiece model at `path`, plus `added` tokens (id → token).

    `added` are the tokens a transformers tokenizer keeps beside the model (its special tokens, and tokens
    added after training, numbered from the vocabulary size on); they are split out of the text before
    normalization, as transformers does for the slow tokenizer.
    """
    proto = read_model(path)
    check_convertible(proto)
    unk_id = next(i for i, p in enumerate(proto.pieces) if p.type == UNKNOWN)
    tokenizer = Tokenizer(models.Unigram(unigram_vocab(proto), unk_id=unk_id, byte_fallback=False))
    tokenizer.normalizer = build_normalizer(proto)
    tokenizer.decoder = build_decoder(proto)
    for index, token in sorted((added or {}).items()):
        if token.special:
            tokenizer.add_special_tokens([token])
        else:
            tokenizer.add_tokens([token])
        if tokenizer.token_to_id(token.content) != index:
            raise ValueError(
                f"cannot build a fast tokenizer: added token {token.content!r} is not at id {index}"
            )
    return tokenizer
