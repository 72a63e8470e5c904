"""attn_impl "flex": torch FlexAttention with an ALiBi score_mod and a causal / padding / document block mask.

On CUDA the kernel is compiled (torch.compile) and skips fully masked blocks, so packed documents cost less
than a dense mask. Elsewhere FlexAttention runs its unfused eager path (correct, slow: for tests). Scores and
softmax are fp32 inside the kernel whatever the input dtype. KV-cache decoding (fewer queries than keys) is
handed to the `torch` backend: each new length would recompile the kernel for one token of work.
"""

from __future__ import annotations

import functools
from typing import Any

import torch
from torch import Tensor

from replitlm.attention.base import Attend, AttentionBackend, AttentionMask


@functools.cache
def _compiled_flex_attention():  # compile lazily, once per process
    from torch.nn.attention.flex_attention import flex_attention

    return torch.compile(flex_attention, dynamic=False)


def _causal(b: Tensor, h: Tensor, q_idx: Tensor, kv_idx: Tensor) -> Tensor:
    return kv_idx <= q_idx


@functools.lru_cache(maxsize=16)
def _causal_block_mask(length: int, device: torch.device) -> Any:
    from torch.nn.attention.flex_attention import create_block_mask

    return create_block_mask(
        _causal, None, None, length, length, device=device, _compile=device.type == "cuda"
    )


class FlexBackend(AttentionBackend):
    name = "flex"

    def check_available(self) -> None:
        try:
            import torch.nn.attention.flex_attention  # noqa: F401
        except ImportError as e:  # pragma: no cover - torch < 2.5
            raise ImportError("attn_impl 'flex' needs torch >= 2.5; use attn_impl 'torch'") from e

    def supports(self, mask: AttentionMask, example: Tensor) -> bool:
        return mask.q_len == mask.k_len

    def build(self, mask: AttentionMask, softmax_scale: float) -> Attend:
        from torch.nn.attention.flex_attention import create_block_mask, flex_attention

        slopes, pad, sid = mask.alibi_slopes, mask.key_padding_mask, mask.sequence_id

        def mask_mod(b: Tensor, h: Tensor, q_idx: Tensor, kv_idx: Tensor) -> Tensor:
            ok = kv_idx <= q_idx
            if pad is not None:
                ok = ok & pad[b, kv_idx]
            if sid is not None:
                ok = ok & (sid[b, q_idx] == sid[b, kv_idx])
            return ok

        def score_mod(score: Tensor, b: Tensor, h: Tensor, q_idx: Tensor, kv_idx: Tensor) -> Tensor:
            return score + slopes[h] * (kv_idx - q_idx)

        on_cuda = mask.device.type == "cuda"
        if pad is None and sid is None:  # the common training case: the same mask every step
            block_mask = _causal_block_mask(mask.q_len, mask.device)
        else:
            block_mask = create_block_mask(
                mask_mod, mask.batch_size, None, mask.q_len, mask.k_len, device=mask.device, _compile=on_cuda
            )
        kernel = _compiled_flex_attention() if on_cuda else flex_attention

        def attend(q: Tensor, k: Tensor, v: Tensor, dropout_p: float) -> Tensor:
            if dropout_p:
                raise ValueError("attn_impl 'flex' has no attention dropout; set attn_config.attn_pdrop to 0")
            return kernel(
                q,
                k,
                v,
                score_mod=score_mod if slopes is not None else None,
                block_mask=block_mask,
                scale=softmax_scale,
            )

        return attend
