#!/usr/bin/env python
"""Attention speed on a GPU: `triton` (our fused kernel) against `flex`, `torch` and `flash`, bf16 causal ALiBi.

For each head dim (32 heads x 80 and x 128) and sequence length (512 to 8192) at batch*seq = 16k tokens:
forward and forward+backward time, TFLOP/s in useful causal FLOPs (half the score matrix; backward counted
as 2.5x forward), peak memory above the inputs, and each backend's time over `triton`'s (> 1: slower than
triton). `flash` is skipped when flash-attn is not installed, any backend that runs out of memory says so.
The header gives a dense bf16 matmul's TFLOP/s as the reachable peak.

    python scripts/bench/attention.py [--seqs 512 2048] [--head-dims 80] [--impls triton flex]
Without CUDA it says so and exits 0.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

import torch

from replitlm.attention import AttentionMask, alibi_slopes, get_backend

IMPLS = ("triton", "flex", "torch", "flash")


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def bench_ms(fn: Callable[[], object], grads: list[torch.Tensor]) -> float:
    import triton.testing

    return triton.testing.do_bench(fn, warmup=25, rep=100, grad_to_none=grads, return_mode="median")


def matmul_tflops() -> float:
    """A dense bf16 8192^3 matmul: what 'peak' means on this card in practice."""
    a, b = (torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16) for _ in range(2))
    ms = bench_ms(lambda: a @ b, [])
    return 2 * 8192**3 / ms / 1e9


def measure(impl: str, b: int, h: int, s: int, d: int) -> tuple[float, float, float] | str:
    """(fwd ms, fwd+bwd ms, peak GiB above the inputs), or why it did not run."""
    try:
        backend = get_backend(impl)
    except (ImportError, RuntimeError) as e:
        return f"unavailable: {str(e).split(';')[0]}"
    mask = AttentionMask(b, s, s, alibi_slopes(h, device="cuda"))
    q, k, v = (
        torch.randn(b, h, s, d, device="cuda", dtype=torch.bfloat16, requires_grad=True) for _ in range(3)
    )
    grad_out = torch.randn_like(q)
    try:
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        attend = backend.build(mask, d**-0.5)  # what a backend derives from the mask counts too
        attend(q, k, v, 0.0).backward(grad_out)
        torch.cuda.synchronize()
        peak = (torch.cuda.max_memory_allocated() - base) / 2**30
        fwd = bench_ms(lambda: attend(q, k, v, 0.0), [q, k, v])
        both = bench_ms(lambda: attend(q, k, v, 0.0).backward(grad_out), [q, k, v])
    except torch.cuda.OutOfMemoryError:
        return "out of memory"
    finally:
        torch.cuda.empty_cache()
    return fwd, both, peak


def run(seqs: list[int], head_dims: list[int], heads: int, tokens: int, impls: list[str]) -> str:
    rows = []
    for d in head_dims:
        for s in seqs:
            b = max(1, tokens // s)
            fwd_flops = 4 * b * heads * s * s * d / 2
            results = {impl: measure(impl, b, heads, s, d) for impl in impls}
            ref = results.get("triton")
            for impl, r in results.items():
                if isinstance(r, str):
                    rows.append([d, s, b, impl, r, "", "", "", "", "", ""])
                    continue
                fwd, both, peak = r
                vs = ["", ""]
                if isinstance(ref, tuple):
                    vs = [f"{fwd / ref[0]:.2f}", f"{both / ref[1]:.2f}"]
                rows.append(
                    [
                        d,
                        s,
                        b,
                        impl,
                        f"{fwd:.2f}",
                        f"{fwd_flops / fwd / 1e9:.0f}",
                        f"{both:.2f}",
                        f"{3.5 * fwd_flops / both / 1e9:.0f}",
                        f"{peak:.2f}",
                        *vs,
                    ]
                )
    header = [
        "hd",
        "seq",
        "batch",
        "attn_impl",
        "fwd ms",
        "fwd TFLOP/s",
        "fwd+bwd ms",
        "fwd+bwd TFLOP/s",
        "peak GiB",
        "fwd time / triton",
        "fwd+bwd time / triton",
    ]
    return table(header, rows)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seqs", type=int, nargs="+", default=[512, 2048, 4096, 8192])
    p.add_argument("--head-dims", type=int, nargs="+", default=[80, 128])
    p.add_argument("--heads", type=int, default=32)
    p.add_argument("--tokens", type=int, default=16384, help="batch * seq")
    p.add_argument("--impls", nargs="+", choices=IMPLS, default=list(IMPLS))
    args = p.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device: nothing to benchmark (run this on a GPU machine)")
        return 0
    import triton

    print(
        f"# Attention speed\n\n{torch.cuda.get_device_name()}, torch {torch.__version__}, triton "
        f"{triton.__version__}; bf16 causal ALiBi, {args.heads} heads, batch*seq = {args.tokens}; "
        f"dense bf16 matmul: {matmul_tflops():.0f} TFLOP/s\n"
    )
    print(run(args.seqs, args.head_dims, args.heads, args.tokens, args.impls))
    return 0


if __name__ == "__main__":
    sys.exit(main())
