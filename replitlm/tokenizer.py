"""ReplitLMTokenizer: replit-code-v1-3b's SentencePiece tokenizer as a transformers (slow) tokenizer.

Behaviour, as the published tokenizer: ids are SentencePiece's; special tokens are <|unk|>=0,
<|endoftext|>=1, <|pad|>=2 and there is no BOS; encoding adds nothing; decoding is SentencePiece's own
(no `.strip()`, control tokens decode to "", <|unk|> to " ⁇ ") and `clean_up_tokenization_spaces` is off.

`encode_batch` is the bulk path for data preparation: raw SentencePiece, multi-threaded, the same ids as
the HF path except that it does not treat the literal text "<|endoftext|>" inside a file as the special token
(which is what a corpus of code wants).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import sentencepiece as spm
from transformers import AutoTokenizer, PreTrainedTokenizer

VOCAB_FILE = "spiece.model"
HUB_ID = "replit/replit-code-v1-3b"


class ReplitLMTokenizer(PreTrainedTokenizer):
    vocab_files_names = {"vocab_file": VOCAB_FILE}
    model_input_names = ["input_ids", "attention_mask"]

    def __init__(
        self,
        vocab_file: str,
        eos_token: str = "<|endoftext|>",
        unk_token: str = "<|unk|>",
        pad_token: str = "<|pad|>",
        bos_token: str | None = None,
        sep_token: str | None = None,
        clean_up_tokenization_spaces: bool = False,
        model_max_length: int = 2048,
        **kwargs: Any,
    ) -> None:
        self.vocab_file = vocab_file
        self.sp_model = load_sentencepiece(vocab_file)
        super().__init__(
            eos_token=eos_token,
            unk_token=unk_token,
            pad_token=pad_token,
            bos_token=bos_token,
            sep_token=sep_token,
            clean_up_tokenization_spaces=clean_up_tokenization_spaces,
            model_max_length=model_max_length,
            **kwargs,
        )

    # -- the four primitives transformers builds on ----------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return self.sp_model.get_piece_size()

    def get_vocab(self) -> dict[str, int]:
        vocab = {self.sp_model.id_to_piece(i): i for i in range(self.vocab_size)}
        vocab.update(self.added_tokens_encoder)
        return vocab

    def _tokenize(self, text: str, **kwargs: Any) -> list[str]:
        return self.sp_model.encode(text, out_type=str)

    def _convert_token_to_id(self, token: str) -> int:
        return self.sp_model.piece_to_id(token)

    def _convert_id_to_token(self, index: int) -> str:
        return self.sp_model.id_to_piece(index)

    def convert_tokens_to_string(self, tokens: list[str]) -> str:
        return self.sp_model.decode(tokens)

    def _decode(
        self,
        token_ids: int | list[int],
        skip_special_tokens: bool = False,
        clean_up_tokenization_spaces: bool | None = None,
        **kwargs: Any,
    ) -> str:
        """SentencePiece decoding of the ids (tokens added after training are spliced in as text)."""
        ids = [token_ids] if isinstance(token_ids, int) else list(token_ids)
        if skip_special_tokens:
            special = set(self.all_special_ids)
            ids = [i for i in ids if i not in special]
        pieces: list[str] = []
        run: list[int] = []
        for i in ids:
            if i < self.vocab_size:
                run.append(i)
                continue
            pieces.append(self.sp_model.decode(run))
            run = []
            pieces.append(self._added_tokens_decoder[i].content)
        pieces.append(self.sp_model.decode(run))
        text = "".join(pieces)
        clean = (
            self.clean_up_tokenization_spaces
            if clean_up_tokenization_spaces is None
            else clean_up_tokenization_spaces
        )
        return self.clean_up_tokenization(text) if clean else text

    def save_vocabulary(self, save_directory: str, filename_prefix: str | None = None) -> tuple[str]:
        if not os.path.isdir(save_directory):
            raise NotADirectoryError(f"save_vocabulary: {save_directory} is not a directory")
        name = (filename_prefix + "-" if filename_prefix else "") + VOCAB_FILE
        out = os.path.join(save_directory, name)
        if os.path.abspath(self.vocab_file) != os.path.abspath(out):
            shutil.copyfile(self.vocab_file, out)
        return (out,)

    # -- bulk path for data preparation ----------------------------------------------------------------
    def encode_batch(self, texts: list[str], num_threads: int = -1) -> list[list[int]]:
        """Token ids for many texts at once (SentencePiece's threaded encoder; no special-token parsing)."""
        return self.sp_model.encode(texts, num_threads=num_threads)

    # The C++ processor does not pickle; multiprocessing workers rebuild it from the file.
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["sp_model"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.sp_model = load_sentencepiece(self.vocab_file)


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


def load_tokenizer(name_or_path: str | os.PathLike[str], **kwargs: Any) -> ReplitLMTokenizer:
    """The tokenizer from a folder, a hub id (e.g. replit/replit-code-v1-3b) or a bare `.model` file."""
    if str(name_or_path).endswith(".model"):
        return ReplitLMTokenizer(vocab_file=str(name_or_path), **kwargs)
    return ReplitLMTokenizer.from_pretrained(str(name_or_path), **kwargs)


def register_auto_classes() -> None:
    """Let `AutoTokenizer` resolve tokenizer_class "ReplitLMTokenizer" once `replitlm` is imported."""
    from replitlm.config import ReplitLMConfig

    AutoTokenizer.register(ReplitLMConfig, slow_tokenizer_class=ReplitLMTokenizer, exist_ok=True)
