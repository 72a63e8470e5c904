"""attn_impl "triton": the project's own fused flash-attention kernel with ALiBi (tracked in its own issue).

Until the kernel lands this backend refuses to build, with a message that names the working alternatives.
"""

from __future__ import annotations

from replitlm.attention import AttentionBackend


class TritonBackend(AttentionBackend):
    name = "triton"

    def check_available(self) -> None:
        raise NotImplementedError(
            "attn_impl 'triton' (the fused Triton flash-attention kernel with ALiBi) is not implemented yet; "
            "use attn_impl 'torch' (any device), 'flex' (CUDA) or 'flash' (flash-attn >= 2.4)"
        )
