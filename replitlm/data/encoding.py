"""Token encoders for data preparation: a SentencePiece model file, or any tokenizer folder / hub id.

The replit tokenizer (and any `.model` file) encodes through raw SentencePiece, the fast bulk path; other
Hugging Face tokenizers encode without special tokens. Encoders pickle as their spec and reload in workers.
"""

from __future__ import annotations

import array
from typing import Any

import numpy as np

from replitlm.spiece import load_sentencepiece, plain_sentencepiece_folder


class TokenEncoder:
    def __init__(self, spec: str) -> None:
        self.spec = spec
        self._load()

    def _load(self) -> None:
        self.sp: Any = None
        self.hf: Any = None
        if self.spec.endswith(".model"):
            self.sp = load_sentencepiece(self.spec)
            eos = self.sp.eos_id()
            self.vocab_size = self.sp.get_piece_size()
        elif (plain := plain_sentencepiece_folder(self.spec)) is not None:  # ours: no transformers needed
            self.sp, eos = plain
            self.vocab_size = self.sp.get_piece_size()
        else:
            from transformers import AutoTokenizer

            from replitlm.hub import HubUnreachableError, hub_errors
            from replitlm.tokenizer import ReplitLMTokenizer  # AutoTokenizer gives it for our folders

            try:
                with hub_errors(self.spec, "--tokenizer", "tokenizer"):
                    tokenizer = AutoTokenizer.from_pretrained(self.spec)
            except HubUnreachableError as e:
                raise ValueError(str(e)) from None
            except (OSError, ValueError) as e:
                raise ValueError(f"--tokenizer {self.spec}: cannot load a tokenizer ({e})") from e
            if isinstance(tokenizer, ReplitLMTokenizer):
                self.sp = tokenizer.sp_model
            else:
                self.hf = tokenizer
            eos = tokenizer.eos_token_id
            self.vocab_size = len(tokenizer)
        if eos is None or eos < 0:
            raise ValueError(
                f"--tokenizer {self.spec}: the tokenizer has no end-of-text token to put between files"
            )
        self.eos_id = int(eos)
        self.numpy_output = self.sp is not None and _has_numpy_output(self.sp)

    def encode(self, texts: list[str], num_threads: int = -1) -> list[list[int]]:
        """Token ids of each text; SentencePiece uses `num_threads` threads (-1: all cores)."""
        if self.sp is not None:
            return self.sp.encode(texts, num_threads=num_threads)
        return self.hf(texts, add_special_tokens=False)["input_ids"]

    def encode_arrays(self, texts: list[str | bytes], num_threads: int = -1) -> list[np.ndarray]:
        """Token ids of each text (str, or UTF-8 bytes) as uint32 arrays.

        Recent SentencePiece (0.2.3 is pinned) returns arrays straight from C++, with no Python int per token
        (those lists and their conversion cost about a tenth as much as the encoding itself)."""
        if self.numpy_output:
            encoded = self.sp.encode(texts, num_threads=num_threads, out_type="numpy")
            return [ids.view(np.uint32) for ids in encoded]
        if self.hf is not None:
            texts = [t.decode("utf-8") if isinstance(t, bytes) else t for t in texts]
        return [np.frombuffer(array.array("I", ids), np.uint32) for ids in self.encode(texts, num_threads)]

    def __getstate__(self) -> dict[str, Any]:
        return {"spec": self.spec}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.spec = state["spec"]
        self._load()


def _has_numpy_output(sp: Any) -> bool:
    try:
        return isinstance(sp.encode(["x"], out_type="numpy")[0], np.ndarray)
    except (ValueError, TypeError, RuntimeError):  # older sentencepiece: no "numpy" out_type
        return False
