#!/usr/bin/env python
"""GPU checks of the model's CUDA paths, printed as Markdown tables (kept in docs/gpu-results.md).

1. attention backends vs an fp64 reference (bf16 inputs, head dim 80, 32 heads): causal ALiBi,
   left padding, packed documents; forward and input-gradient errors (`triton` on CUDA only);
2. attention speed at batch*seq = 16k tokens, seq 2048, 32 heads x 80, bf16, causal ALiBi: the `torch`
   backend (fp32 compute), plain bf16 SDPA with a bf16 bias (what replit's own code effectively does), `flex`,
   `triton` (scripts/bench/attention.py compares the fast backends over more shapes);
3. bf16 autocast training steps of a 350m-shape model with `torch` and `flex` attention: first loss,
   loss after N steps on one batch, tokens/s, peak memory;
4. greedy generation in bf16 with the KV cache: `flex` (prefill) vs `torch`, token agreement.

    python scripts/bench/gpu_check.py [--quick] [--out results.md]
    PYTHONPATH=. python scripts/bench/gpu_check.py ...    # where the project is not installed (a lent GPU)
Without CUDA it says so and exits 0 (with --device cpu --quick it runs tiny shapes, to test the script).
"""

from __future__ import annotations

import argparse
import datetime
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from replitlm import ReplitLMForCausalLM, config_for_size
from replitlm.attention import AttentionMask, alibi_slopes, get_backend


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def make_masks(b: int, h: int, s: int, device: str) -> dict[str, AttentionMask]:
    slopes = alibi_slopes(h, device=device)
    pad = torch.ones(b, s, dtype=torch.bool, device=device)
    pad[0, : s // 4] = False
    sid = torch.zeros(b, s, dtype=torch.long, device=device)
    sid[:, s // 3 :] = 1
    sid[:, (2 * s) // 3 :] = 2
    return {
        "causal": AttentionMask(b, s, s, slopes),
        "left padding": AttentionMask(b, s, s, slopes, key_padding_mask=pad),
        "packed documents": AttentionMask(b, s, s, slopes, sequence_id=sid),
    }


def attention_accuracy(device: str, quick: bool) -> str:
    b, h, s, d = (1, 4, 64, 16) if quick else (2, 32, 2048, 80)
    g = torch.Generator(device=device).manual_seed(0)
    q, k, v = (torch.randn(b, h, s, d, generator=g, device=device, dtype=torch.bfloat16) for _ in range(3))
    scale = d**-0.5
    rows = []
    for case, mask in make_masks(b, h, s, device).items():
        visible = mask.allowed().any(-1, keepdim=True)
        q64, k64, v64 = (t.double().requires_grad_() for t in (q, k, v))
        ref = torch.softmax(q64 @ k64.transpose(-1, -2) * scale + mask.dense_bias().double(), -1) @ v64
        grad_out = torch.randn(ref.shape, generator=g, device=device, dtype=torch.float64) * visible
        ref_grads = torch.autograd.grad(ref, (q64, k64, v64), grad_out)
        for impl in ("torch", "flex", "flash", *(["triton"] if device == "cuda" else [])):
            try:
                attend = get_backend(impl).build(mask, scale)
            except ImportError as e:
                rows.append([case, impl, "not installed", str(e).split(";")[0], ""])
                continue
            qi, ki, vi = (t.clone().requires_grad_() for t in (q, k, v))
            out = attend(qi, ki, vi, 0.0)
            grads = torch.autograd.grad(out, (qi, ki, vi), grad_out.to(out.dtype))
            err = ((out.double() - ref) * visible).abs().max().item()
            gerr = max(
                ((a.double() - r).abs().max() / r.abs().max()).item()
                for a, r in zip(grads, ref_grads, strict=True)
            )
            rows.append(
                [case, impl, f"{err:.2e}", f"{gerr:.2e}", "ok" if err < 2e-2 and gerr < 2e-2 else "CHECK"]
            )
        del ref, ref_grads
    header = ["mask", "attn_impl", "max abs err (out)", "max rel err (dq,dk,dv)", "within bf16 tol (2e-2)"]
    return f"shape B={b} H={h} S={s} hd={d}, bf16 inputs, reference fp64\n\n" + table(header, rows)


def cuda_time(fn: Callable[[], object], iters: int) -> float:
    """Median milliseconds of fn over iters runs after warm-up."""
    for _ in range(3):
        fn()
    times = []
    for _ in range(iters):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return sorted(times)[len(times) // 2]


def attention_speed(quick: bool) -> str:
    s, h, d = (256, 4, 64) if quick else (2048, 32, 80)
    b = max(1, 16384 // s) if not quick else 1
    scale = d**-0.5
    mask = AttentionMask(b, s, s, alibi_slopes(h, device="cuda"))
    dense = mask.dense_bias().to(torch.bfloat16)
    variants = {
        "torch (SDPA, fp32 compute)": get_backend("torch").build(mask, scale),
        "bf16 SDPA + bf16 bias (replit-style)": lambda q, k, v, p: (
            torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=dense, scale=scale)
        ),
        "flex (compiled)": get_backend("flex").build(mask, scale),
        "triton (ours)": get_backend("triton").build(mask, scale),
    }
    causal_flops = 4 * b * h * s * s * d / 2  # two matmuls, half the square is masked
    rows = []
    for name, attend in variants.items():
        q, k, v = (
            torch.randn(b, h, s, d, device="cuda", dtype=torch.bfloat16, requires_grad=True) for _ in range(3)
        )
        torch.cuda.reset_peak_memory_stats()
        fwd = cuda_time(lambda attend=attend, q=q, k=k, v=v: attend(q, k, v, 0.0), 10)

        def fwd_bwd(attend=attend, q=q, k=k, v=v) -> None:
            attend(q, k, v, 0.0).sum().backward()

        both = cuda_time(fwd_bwd, 10)
        peak = torch.cuda.max_memory_allocated() / 2**30
        rows.append(
            [
                name,
                f"{fwd:.2f}",
                f"{causal_flops / fwd / 1e9:.0f}",
                f"{both:.2f}",
                f"{3.5 * causal_flops / both / 1e9:.0f}",
                f"{peak:.2f}",
            ]
        )
    header = ["variant", "fwd ms", "fwd TFLOP/s", "fwd+bwd ms", "fwd+bwd TFLOP/s", "peak GiB"]
    return (
        f"B={b} S={s} H={h} hd={d} bf16 causal ALiBi (useful causal FLOPs; bwd counted as 2.5x fwd)\n\n"
        + table(header, rows)
    )


def training_steps(device: str, quick: bool, steps: int) -> str:
    size, seq, batch = ("tiny", 128, 2) if quick else ("350m", 2048, 4)
    rows = []
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(3, 32768, (batch, seq), generator=g).to(device)
    for impl in ("torch", "flex"):
        torch.manual_seed(0)
        config = config_for_size(size, max_seq_len=seq, attn_config={"attn_impl": impl})
        model = ReplitLMForCausalLM(config).to(device).train()
        opt = torch.optim.AdamW(model.parameters(), lr=3e-4)
        losses = []
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        start = None
        for step in range(steps):
            if step == 2:  # compilation and warm-up done
                if device == "cuda":
                    torch.cuda.synchronize()
                start = time.perf_counter()
            with torch.autocast(device, dtype=torch.bfloat16):
                loss = model(ids, labels=ids).loss
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            losses.append(loss.item())
        if device == "cuda":
            torch.cuda.synchronize()
        tok_s = batch * seq * (steps - 2) / (time.perf_counter() - start)
        peak = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else float("nan")
        rows.append([impl, f"{losses[0]:.4f}", f"{losses[-1]:.4f}", f"{tok_s:,.0f}", f"{peak:.1f}"])
        del model, opt
    header = ["attn_impl", "loss step 0", f"loss step {steps - 1}", "tokens/s", "peak GiB"]
    n_params = sum(p.numel() for p in ReplitLMForCausalLM(config_for_size(size)).parameters()) / 1e6
    return (
        f"{size} ({n_params:.0f}M params), batch {batch} x {seq}, amp bf16 autocast, AdamW, one repeated batch\n\n"
        + table(header, rows)
    )


def generation(device: str) -> str:
    torch.manual_seed(0)
    config = config_for_size("125m", max_seq_len=512)
    base = ReplitLMForCausalLM(config).to(device, torch.bfloat16).eval()
    prompt = torch.randint(3, 32768, (4, 100), generator=torch.Generator().manual_seed(1)).to(device)
    outs = {}
    for impl in ("torch", "flex"):
        model = ReplitLMForCausalLM(config_for_size("125m", max_seq_len=512, attn_config={"attn_impl": impl}))
        model.load_state_dict(base.state_dict())
        model = model.to(device, torch.bfloat16).eval()
        outs[impl] = model.generate(
            prompt, max_new_tokens=32, do_sample=False, use_cache=True, pad_token_id=2
        )
    agree = (outs["torch"][:, 100:] == outs["flex"][:, 100:]).float().mean().item()
    return f"125m random weights, bf16, 4 prompts x 100 tokens, 32 greedy tokens: flex vs torch token agreement {agree:.1%}"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda")
    p.add_argument("--quick", action="store_true", help="tiny shapes (to test this script)")
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--out", type=Path, default=None, help="also write the report here")
    args = p.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: nothing to check (run this on a GPU machine)")
        return 0
    name = torch.cuda.get_device_name() if args.device == "cuda" else platform.processor() or "cpu"
    import transformers
    import triton

    sections = [
        f"# GPU results\n\n{name}, {datetime.date.today()}, torch {torch.__version__}, triton {triton.__version__}, "
        f"transformers {transformers.__version__}, Python {platform.python_version()}",
        "## Attention backends vs fp64 reference\n\n" + attention_accuracy(args.device, args.quick),
    ]
    if args.device == "cuda":
        sections.append("## Attention speed\n\n" + attention_speed(args.quick))
    sections.append("## bf16 training steps\n\n" + training_steps(args.device, args.quick, args.steps))
    sections.append("## Generation\n\n" + generation(args.device))
    report = "\n\n".join(sections) + "\n"
    print(report)
    if args.out:
        args.out.write_text(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
