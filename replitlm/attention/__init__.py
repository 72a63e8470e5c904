"""Attention backends behind `attn_config.attn_impl`.

Every backend computes the same function: causal softmax attention with an ALiBi bias
`slope_h * (k_pos - q_pos)` (zero without ALiBi), keys hidden by the padding mask and, for packed sequences,
by document boundaries (`sequence_id`). Queries are the last `q_len` of `k_len` positions (bottom-right
aligned), so a KV-cache decode step is the same call with fewer queries.

The model describes one forward call with an `AttentionMask` and asks the backend once per call for an
`Attend` function, which every layer then uses: whatever the backend derives from the mask (a dense bias, a
block mask, unpadding indices) is built once, not once per layer.
"""

from __future__ import annotations

from torch import Tensor

from replitlm.attention.base import Attend, AttentionBackend, AttentionMask, alibi_slopes
from replitlm.attention.flash import FlashBackend
from replitlm.attention.flex import FlexBackend
from replitlm.attention.sdpa import SDPABackend
from replitlm.attention.triton_flash import TritonBackend

__all__ = ["Attend", "AttentionBackend", "AttentionMask", "alibi_slopes", "get_backend", "select_backend"]

BACKENDS: dict[str, type[AttentionBackend]] = {
    "torch": SDPABackend,
    "flex": FlexBackend,
    "flash": FlashBackend,
    "triton": TritonBackend,
}


def get_backend(attn_impl: str) -> AttentionBackend:
    """The backend named by `attn_config.attn_impl`, checked for availability."""
    if attn_impl not in BACKENDS:
        raise ValueError(f"attn_config.attn_impl: '{attn_impl}' is not one of {sorted(BACKENDS)}")
    backend = BACKENDS[attn_impl]()
    backend.check_available()
    return backend


def select_backend(preferred: AttentionBackend, mask: AttentionMask, example: Tensor) -> AttentionBackend:
    """The preferred backend, or the `torch` one for calls it cannot take (e.g. padded KV-cache decoding)."""
    return preferred if preferred.supports(mask, example) else SDPABackend()
