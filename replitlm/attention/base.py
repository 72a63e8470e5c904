"""What every attention backend shares: the mask of one forward call, the ALiBi slopes, the backend interface.

Backends import from here, and the registry in replitlm/attention/__init__.py imports the backends, so
imports run one way.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

# attend(q, k, v, dropout_p) -> out; q [B, H, q_len, hd], k/v [B, H, k_len, hd], out like q.
Attend = Callable[[Tensor, Tensor, Tensor, float], Tensor]


def alibi_slopes(n_heads: int, alibi_bias_max: float = 8, device: torch.device | None = None) -> Tensor:
    """Per-head ALiBi slopes in fp32, as replit-code-v1-3b computes them.

    For a power-of-two head count slope_h = 2^-(alibi_bias_max*(h+1)/n_heads). Otherwise the schedule of the
    next power of two N is interleaved (odd entries, then even) and cut to n_heads, as in the ALiBi paper.
    """
    n = 2 ** math.ceil(math.log2(n_heads))
    exponents = torch.arange(1, n + 1, dtype=torch.float32, device=device) * (alibi_bias_max / n)
    slopes = 1.0 / torch.pow(2, exponents)
    if n != n_heads:
        slopes = torch.cat([slopes[1::2], slopes[::2]])[:n_heads]
    return slopes


@dataclass(frozen=True)
class AttentionMask:
    """Everything that decides which keys a query sees, for one forward call."""

    batch_size: int
    q_len: int
    k_len: int
    alibi_slopes: Tensor | None  # [H] fp32, or None for no positional bias
    key_padding_mask: Tensor | None = None  # [B, k_len] bool, True = real token; None = no padding
    sequence_id: Tensor | None = None  # [B, q_len] document index per token (only without a KV cache)
    device: torch.device | None = None  # where masks are built; defaults to that of the tensors above

    def __post_init__(self) -> None:
        if self.device is None:
            tensors = (self.alibi_slopes, self.key_padding_mask, self.sequence_id)
            device = next((t.device for t in tensors if t is not None), torch.device("cpu"))
            object.__setattr__(self, "device", device)

    def allowed(self) -> Tensor:
        """Boolean [B|1, 1, q_len, k_len]: may query i attend to key j."""
        q_pos, k_pos = self.positions()
        allowed = (k_pos[None, :] <= q_pos[:, None])[None, None]
        if self.key_padding_mask is not None:
            allowed = allowed & self.key_padding_mask[:, None, None, :]
        if self.sequence_id is not None:
            sid = self.sequence_id
            allowed = allowed & (sid[:, None, :, None] == sid[:, None, None, :])
        return allowed

    def positions(self) -> tuple[Tensor, Tensor]:
        """Absolute positions of the queries and keys (queries are the last q_len keys)."""
        k_pos = torch.arange(self.k_len, device=self.device)
        return k_pos[self.k_len - self.q_len :], k_pos

    def dense_bias(self) -> Tensor:
        """fp32 additive bias [B|1, H|1, q_len, k_len]: ALiBi where allowed, finfo.min where not.

        finfo.min rather than -inf keeps fully masked rows (left-pad queries) finite, as the reference does.
        """
        q_pos, k_pos = self.positions()
        if self.alibi_slopes is None:
            bias = torch.zeros(1, 1, self.q_len, self.k_len, device=self.device)
        else:
            distance = (k_pos[None, :] - q_pos[:, None]).float()
            bias = self.alibi_slopes[None, :, None, None] * distance[None, None]
        return bias.masked_fill(~self.allowed(), torch.finfo(torch.float32).min)


class AttentionBackend:
    """One attn_impl. `build` is called once per forward call; `supports` says whether it can take it."""

    name: str = ""

    def check_available(self) -> None:
        """Raise a clear error if this backend cannot run in this environment at all."""

    def supports(self, mask: AttentionMask, example: Tensor) -> bool:
        return True

    def build(self, mask: AttentionMask, softmax_scale: float) -> Attend:
        raise NotImplementedError
