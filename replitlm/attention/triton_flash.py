"""attn_impl "triton": the project's own fused flash-attention kernel with ALiBi (`replitlm.kernels.flash_alibi`).

Causal ALiBi attention with key padding and packed documents (`sequence_id`), forward and backward, in
fp32/bf16/fp16 with fp32 accumulation, head dims up to 128, any length, and KV-cache decoding (fewer
queries than keys) in the kernel itself. Runs on CUDA; on CPU only under TRITON_INTERPRET=1 (Triton's
interpreter, slow: for tests). No attention dropout. Queries that see no key (left-padding positions) get a
zero output, as with `flash`; `torch` returns the mean of v there, which the model never reads.
"""

from __future__ import annotations

import os

import torch
from torch import Tensor

from replitlm.attention.base import Attend, AttentionBackend, AttentionMask


def _interpreted() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


class TritonBackend(AttentionBackend):
    name = "triton"

    def check_available(self) -> None:
        try:
            import triton  # noqa: F401
        except ImportError as e:
            raise ImportError(
                "attn_impl 'triton' needs the triton package (installed with CUDA builds of torch); "
                "use attn_impl 'torch' (any device) or 'flex' (CUDA) instead"
            ) from e
        if not torch.cuda.is_available() and not _interpreted():
            raise RuntimeError(
                "attn_impl 'triton' needs a CUDA GPU (or TRITON_INTERPRET=1, Triton's slow CPU interpreter, "
                "set before triton is imported); use attn_impl 'torch' on this machine"
            )

    def supports(self, mask: AttentionMask, example: Tensor) -> bool:
        if not example.is_cuda and not _interpreted():
            raise ValueError(
                f"attn_impl 'triton' runs on CUDA tensors, got {example.device}: move the model to a GPU "
                "or use attn_impl 'torch'"
            )
        return True

    def build(self, mask: AttentionMask, softmax_scale: float) -> Attend:
        from replitlm.kernels.flash_alibi import flash_alibi_attention, kernel_mask

        kmask = kernel_mask(
            mask.q_len, mask.k_len, mask.alibi_slopes, mask.key_padding_mask, mask.sequence_id
        )

        def attend(q: Tensor, k: Tensor, v: Tensor, dropout_p: float) -> Tensor:
            if dropout_p:
                raise ValueError(
                    "attn_impl 'triton' has no attention dropout; set attn_config.attn_pdrop to 0"
                )
            return flash_alibi_attention(q, k, v, softmax_scale, kmask)

        return attend
