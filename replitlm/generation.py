"""Generation as the replit-code-v1-3b model card describes it: sample, stop at EOS or a stop sequence, trim.

`generate_code` wraps `model.generate` (left padding, KV cache, stop strings through transformers'
`StopStringCriteria`) and post-processes each completion with `postprocess`. `StopAwareStreamer` prints a
completion as it is generated, holding back text that might turn out to be the start of a stop sequence.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TextIO

import torch
from transformers import PreTrainedTokenizer, TextStreamer

# Stop sequences from the model card and the bigcode harness: the end of a function body in Python.
DEFAULT_STOP_SEQUENCES: tuple[str, ...] = ("\ndef", "\nclass", "\nif", "\nprint", "\n#", "```", "\n\n\n")


@dataclass
class SamplingConfig:
    """Decoding settings; the defaults are the model card's (sampling, temperature 0.2, top_p 0.95, top_k 4)."""

    max_new_tokens: int = 128
    do_sample: bool = True
    temperature: float = 0.2
    top_p: float = 0.95
    top_k: int = 4
    stop_sequences: Sequence[str] = field(default_factory=lambda: DEFAULT_STOP_SEQUENCES)
    use_cache: bool = True

    def __post_init__(self) -> None:
        if self.max_new_tokens <= 0:
            raise ValueError(f"max_new_tokens must be positive, got {self.max_new_tokens}")
        if self.do_sample and self.temperature <= 0:
            raise ValueError(f"temperature must be positive when sampling, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {self.top_k}")


def truncate_at_stop(text: str, stop_sequences: Sequence[str]) -> str:
    """Cut `text` at the earliest occurrence of any stop sequence."""
    cut = min((i for s in stop_sequences if s and (i := text.find(s)) != -1), default=len(text))
    return text[:cut]


def postprocess(text: str, stop_sequences: Sequence[str] = DEFAULT_STOP_SEQUENCES) -> str:
    """The model card's post-processing: truncate at a stop sequence, then strip trailing whitespace."""
    return truncate_at_stop(text, stop_sequences).rstrip()


def completion_ids(
    ids: Sequence[int], eos_token_id: int | None, pad_token_id: int | None = None
) -> list[int]:
    """Generated ids up to (not including) the first EOS, with padding removed."""
    out: list[int] = []
    for i in ids:
        if i == eos_token_id:
            break
        if i != pad_token_id:
            out.append(i)
    return out


@torch.no_grad()
def generate_code(
    model: torch.nn.Module,
    tokenizer: PreTrainedTokenizer,
    prompts: Sequence[str],
    sampling: SamplingConfig | None = None,
    streamer: TextStreamer | None = None,
) -> list[str]:
    """Complete each prompt; returns the post-processed completions (prompt not included)."""
    sampling = sampling or SamplingConfig()
    # Left padding: generation continues from the last position of every row.
    batch = tokenizer(list(prompts), return_tensors="pt", padding=True, padding_side="left").to(model.device)
    extra = {"temperature": sampling.temperature, "top_p": sampling.top_p, "top_k": sampling.top_k}
    out = model.generate(
        **batch,
        max_new_tokens=sampling.max_new_tokens,
        do_sample=sampling.do_sample,
        **(extra if sampling.do_sample else {}),
        stop_strings=list(sampling.stop_sequences) or None,
        tokenizer=tokenizer,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        use_cache=sampling.use_cache,
        streamer=streamer,
    )
    new_tokens = out[:, batch["input_ids"].shape[1] :].tolist()
    texts = [
        tokenizer.decode(
            completion_ids(row, tokenizer.eos_token_id, tokenizer.pad_token_id),
            clean_up_tokenization_spaces=False,
        )
        for row in new_tokens
    ]
    return [postprocess(t, sampling.stop_sequences) for t in texts]


class StopAwareStreamer(TextStreamer):
    """Streams one completion to a terminal as `postprocess` would leave it: never prints a stop sequence,
    what follows it, or trailing whitespace."""

    def __init__(
        self, tokenizer: PreTrainedTokenizer, stop_sequences: Sequence[str], out: TextIO = sys.stdout
    ) -> None:
        super().__init__(
            tokenizer, skip_prompt=True, skip_special_tokens=True, clean_up_tokenization_spaces=False
        )
        self.stop_sequences = [s for s in stop_sequences if s]
        self.out = out
        self.pending = ""
        self.stopped = False

    def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
        if self.stopped:
            return
        self.pending += text
        cut = truncate_at_stop(self.pending, self.stop_sequences)
        if len(cut) < len(self.pending):
            self.out.write(cut.rstrip())
            self.stopped = True
        else:
            # Hold back what may start a stop sequence, and trailing whitespace (trimmed at the end).
            trailing_space = len(self.pending) - len(self.pending.rstrip())
            keep = max(self._possible_stop_prefix(self.pending), trailing_space)
            self.out.write(self.pending[: len(self.pending) - keep])
            self.pending = self.pending[len(self.pending) - keep :]
            if stream_end:
                self.out.write(self.pending.rstrip())
                self.pending = ""
        if stream_end or self.stopped:
            self.out.write("\n")
        self.out.flush()

    def _possible_stop_prefix(self, text: str) -> int:
        """Length of the longest suffix of `text` that is a proper prefix of some stop sequence."""
        best = 0
        for stop in self.stop_sequences:
            for n in range(min(len(stop) - 1, len(text)), best, -1):
                if text.endswith(stop[:n]):
                    best = n
                    break
        return best
