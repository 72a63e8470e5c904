"""attn_impl "flash": flash-attn >= 2.4 with `alibi_slopes` (CUDA, fp16/bf16).

Unpadded batches go to `flash_attn_func`, which also takes KV-cache decoding (bottom-right causal alignment).
Padding and packed documents are unpadded into one varlen batch whose segments are (row, document) runs, so
ALiBi distances restart per document for free. Padded KV-cache decoding falls back to the `torch` backend.
"""

from __future__ import annotations

import torch
from torch import Tensor

from replitlm.attention.base import Attend, AttentionBackend, AttentionMask

MIN_FLASH_ATTN = (2, 4)


class FlashBackend(AttentionBackend):
    name = "flash"

    def check_available(self) -> None:
        try:
            import flash_attn
        except ImportError as e:
            raise ImportError(
                "attn_impl 'flash' needs flash-attn >= 2.4 (pip install 'replitlm[gpu]' on a CUDA machine); "
                "use attn_impl 'flex' (CUDA) or 'torch' (anywhere) instead"
            ) from e
        version = tuple(int(p) for p in flash_attn.__version__.split(".")[:2])
        if version < MIN_FLASH_ATTN:
            raise ImportError(
                f"attn_impl 'flash' needs flash-attn >= 2.4 for ALiBi; found {flash_attn.__version__}"
            )

    def supports(self, mask: AttentionMask, example: Tensor) -> bool:
        if not example.is_cuda or example.dtype not in (torch.float16, torch.bfloat16):
            raise ValueError(
                f"attn_impl 'flash' runs on CUDA in fp16/bf16, got {example.dtype} on {example.device}; "
                "load the model with torch_dtype=torch.bfloat16 on a GPU or use attn_impl 'torch'"
            )
        return mask.q_len == mask.k_len or mask.key_padding_mask is None

    def build(self, mask: AttentionMask, softmax_scale: float) -> Attend:
        from flash_attn import flash_attn_func, flash_attn_varlen_func

        slopes = mask.alibi_slopes
        if mask.key_padding_mask is None and mask.sequence_id is None:

            def attend(q: Tensor, k: Tensor, v: Tensor, dropout_p: float) -> Tensor:
                out = flash_attn_func(
                    *(t.transpose(1, 2) for t in (q, k, v)),
                    dropout_p=dropout_p,
                    softmax_scale=softmax_scale,
                    causal=True,
                    alibi_slopes=slopes,
                )
                return out.transpose(1, 2)

            return attend

        index, cu_seqlens, max_len = _segments(mask)

        def attend_varlen(q: Tensor, k: Tensor, v: Tensor, dropout_p: float) -> Tensor:
            b, h, s, d = q.shape
            packed = [t.transpose(1, 2).reshape(b * s, h, d)[index] for t in (q, k, v)]
            out = flash_attn_varlen_func(
                *packed,
                cu_seqlens,
                cu_seqlens,
                max_len,
                max_len,
                dropout_p=dropout_p,
                softmax_scale=softmax_scale,
                causal=True,
                alibi_slopes=slopes,
            )
            full = out.new_zeros(b * s, h, d).index_copy_(0, index, out)
            return full.view(b, s, h, d).transpose(1, 2)

        return attend_varlen


def _segments(mask: AttentionMask) -> tuple[Tensor, Tensor, int]:
    """Flat indices of real tokens and cu_seqlens of their (row, document) runs."""
    b, s = mask.batch_size, mask.q_len
    device = mask.device
    real = (
        mask.key_padding_mask
        if mask.key_padding_mask is not None
        else torch.ones(b, s, dtype=torch.bool, device=device)
    )
    doc = (
        mask.sequence_id
        if mask.sequence_id is not None
        else torch.zeros(b, s, dtype=torch.long, device=device)
    )
    index = real.flatten().nonzero().flatten()
    row = index // s
    doc = doc.flatten()[index]
    starts = torch.ones_like(index, dtype=torch.bool)
    starts[1:] = (row[1:] != row[:-1]) | (doc[1:] != doc[:-1])
    start_pos = starts.nonzero().flatten()
    lengths = torch.diff(torch.cat([start_pos, start_pos.new_tensor([index.numel()])]))
    cu_seqlens = torch.nn.functional.pad(lengths.cumsum(0), (1, 0)).to(torch.int32)
    return index, cu_seqlens, int(lengths.max())
