"""Token encoders for data preparation: a SentencePiece model file, or any tokenizer folder / hub id.

The replit tokenizer (and any `.model` file) encodes through raw SentencePiece, the fast bulk path; other
Hugging Face tokenizers encode without special tokens. Encoders pickle as their spec and reload in workers.
"""

from __future__ import annotations

from typing import Any

from replitlm.tokenizer import ReplitLMTokenizer, load_sentencepiece


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
        else:
            from transformers import AutoTokenizer

            import replitlm  # noqa: F401 - registers ReplitLMTokenizer with AutoTokenizer

            try:
                tokenizer = AutoTokenizer.from_pretrained(self.spec)
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

    def encode(self, texts: list[str], num_threads: int = -1) -> list[list[int]]:
        """Token ids of each text; SentencePiece uses `num_threads` threads (-1: all cores)."""
        if self.sp is not None:
            return self.sp.encode(texts, num_threads=num_threads)
        return self.hf(texts, add_special_tokens=False)["input_ids"]

    def __getstate__(self) -> dict[str, Any]:
        return {"spec": self.spec}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.spec = state["spec"]
        self._load()
