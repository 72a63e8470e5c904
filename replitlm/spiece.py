"""The SentencePiece model file (spiece.model) on its own: loading it, and reading a tokenizer folder that
ReplitLMTokenizer saved without importing transformers (data-prep workers encode with raw SentencePiece)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import sentencepiece as spm

VOCAB_FILE = "spiece.model"
OWN_CLASS_KEY = "replitlm_tokenizer_class"  # tokenizer_config.json: the class replitlm loads the folder with
OWN_CLASS = "ReplitLMTokenizer"


def load_sentencepiece(path: str | os.PathLike[str]) -> spm.SentencePieceProcessor:
    """A SentencePiece processor, with an error that names the file if it is missing or not a model."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"tokenizer model {path} does not exist")
    sp = spm.SentencePieceProcessor()
    try:
        sp.load(str(path))
    except (OSError, RuntimeError) as e:
        raise ValueError(f"{path} is not a SentencePiece model: {e}") from e
    return sp


def plain_sentencepiece_folder(
    folder: str | os.PathLike[str],
) -> tuple[spm.SentencePieceProcessor, int] | None:
    """(processor, end-of-text id) for a folder whose ReplitLMTokenizer is exactly its spiece.model (no tokens
    added beyond it), read without transformers; None for anything else (a hub id, another tokenizer)."""
    folder = Path(folder)
    config_file, model_file = folder / "tokenizer_config.json", folder / VOCAB_FILE
    if not (config_file.is_file() and model_file.is_file()):
        return None
    config = json.loads(config_file.read_text(encoding="utf-8"))
    if OWN_CLASS not in (config.get(OWN_CLASS_KEY), config.get("tokenizer_class")):
        return None
    sp = load_sentencepiece(model_file)
    added = [int(i) for i in config.get("added_tokens_decoder", {})]
    eos = config.get("eos_token")
    eos = eos.get("content") if isinstance(eos, dict) else eos
    if not isinstance(eos, str) or any(i >= sp.get_piece_size() for i in added):
        return None
    eos_id = sp.piece_to_id(eos)
    if eos_id == sp.unk_id() and eos != sp.id_to_piece(sp.unk_id()):
        return None
    return sp, eos_id
