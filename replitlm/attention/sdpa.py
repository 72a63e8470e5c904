"""attn_impl "torch": PyTorch scaled_dot_product_attention with a dense additive bias.

The reference backend: runs on any device and dtype and supports everything (padding, packed documents,
KV-cache decoding, attention dropout). In bf16/fp16 it computes attention in fp32, so the ALiBi bias and
the softmax keep full precision (replit's own code adds a bf16 bias, which loses the early positions of long
sequences). That costs speed and memory on GPUs; `flex`, `triton` and `flash` are the fast paths there.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from replitlm.attention.base import Attend, AttentionBackend, AttentionMask


class SDPABackend(AttentionBackend):
    name = "torch"

    def build(self, mask: AttentionMask, softmax_scale: float) -> Attend:
        bias = mask.dense_bias()

        def attend(q: Tensor, k: Tensor, v: Tensor, dropout_p: float) -> Tensor:
            out = F.scaled_dot_product_attention(
                q.float(), k.float(), v.float(), attn_mask=bias, dropout_p=dropout_p, scale=softmax_scale
            )
            return out.to(q.dtype)

        return attend
