#!/usr/bin/env python
"""Shared memory of every autotune config of the `triton` attention kernels, compiled ahead of time on CPU.

Each kernel of `replitlm.kernels.flash_alibi` (forward, dK/dV, dQ, and the fixed-tile delta kernel) is
compiled with `triton.compile` for each arch, head dim, dtype and autotune config, and the shared memory of
the result (`metadata.shared`, bytes per program) is compared with the arch's per-block limit. No GPU or
driver is needed: the target is given explicitly and triton ships ptxas. A config over the limit is one the
autotuner skips on that GPU (OutOfResources); a (kernel, head dim, dtype) with no fitting config at all would
fail to launch there.

Kernels are compiled the way a training launch specialises them: ALiBi, key padding and sequence_id all on
(the largest variant), 16-byte aligned tensors and strides and lengths divisible by 16.

    python scripts/bench/triton_shared_memory.py [--archs 80 90] [--head-dims 64 80 128] [--json]
Prints a Markdown table (or JSON rows with --json); compiled kernels land in triton's cache.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from multiprocessing import get_context

# triton.jit reads TRITON_INTERPRET when the kernels are defined; interpreted kernels cannot be compiled.
# Dropped before the imports below, and so for the worker processes too.
os.environ.pop("TRITON_INTERPRET", None)

import torch
import triton
from triton.backends.compiler import GPUTarget
from triton.runtime.jit import JITFunction, mangle_type

from replitlm.kernels import flash_alibi as fa

# Max dynamic shared memory per block (cudaDevAttrMaxSharedMemoryPerBlockOptin, the "Hardware limit" in
# triton's OutOfResources): the CUDA programming guide's 163 KB on sm_80 (A100), 99 KB on sm_86/sm_89
# (A10, RTX 30xx/40xx, L4), 227 KB on sm_90 (H100/H200).
SHARED_LIMITS = {80: 166912, 86: 101376, 89: 101376, 90: 232448}
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
# Pointers that do not take the dtype of q, k and v.
AUX_POINTERS = {
    "LSE": torch.float32,
    "Delta": torch.float32,
    "Slopes": torch.float32,
    "Real": torch.int8,
    "Doc": torch.int32,
    "KvLo": torch.int32,
    "QHi": torch.int32,
}
IO_POINTERS = {"Q", "K", "V", "Out", "DO", "DK", "DV", "DQ"}
FLOAT_SCALARS = {"qk_scale", "sm_scale"}
INT_SCALARS = {"n_heads", "q_len", "k_len", "Q_BUCKET", "K_BUCKET"}
ALIGNED = [["tt.divisibility", 16]]


@dataclass(frozen=True)
class Case:
    arch: int
    kernel: str
    head_dim: int
    dtype: str
    block_m: int
    block_n: int  # 0: the kernel has no key tile (delta)
    warps: int
    stages: int


def kernels() -> dict[str, tuple[JITFunction, list[tuple[int, int, int, int]]]]:
    """Kernel name -> (its JITFunction, its (BLOCK_M, BLOCK_N, warps, stages) configs)."""

    def jit(kernel: object) -> JITFunction:
        return kernel.fn if isinstance(kernel, triton.runtime.Autotuner) else kernel  # autotuned on a GPU

    return {
        "fwd": (jit(fa._fwd_kernel), fa.FWD_CONFIGS),
        "dkdv": (jit(fa._dkdv_kernel), fa.DKDV_CONFIGS),
        "dq": (jit(fa._dq_kernel), fa.DQ_CONFIGS),
        # Not autotuned: the launcher's fixed tile with triton's default 4 warps and 3 stages.
        "delta": (fa._delta_kernel, [(fa.DELTA_BLOCK, 0, 4, 3)]),
    }


def cases(archs: list[int], head_dims: list[int], dtypes: list[str], last: bool = False) -> list[Case]:
    """Every config of every kernel, or with `last` only the last of each list (the fp32-on-A100 fallback)."""
    return [
        Case(arch, name, d, dtype, *config)
        for arch in archs
        for name, (_, configs) in kernels().items()
        for d in head_dims
        for dtype in dtypes
        for config in (configs[-1:] if last else configs)
    ]


def signature(fn: JITFunction, dtype: torch.dtype) -> tuple[dict[str, str], dict[tuple[int], list]]:
    """Argument types and divisibility attributes, as a launch with aligned tensors specialises them."""
    types, attrs = {}, {}
    for i, p in enumerate(fn.params):
        if p.is_constexpr:
            types[p.name] = "constexpr"
        elif p.name in FLOAT_SCALARS:
            types[p.name] = "fp32"
        elif p.name in IO_POINTERS or p.name in AUX_POINTERS:
            types[p.name] = mangle_type(torch.empty(0, dtype=AUX_POINTERS.get(p.name, dtype)))
            attrs[(i,)] = ALIGNED
        elif p.name in INT_SCALARS or p.name.startswith("stride_"):
            types[p.name] = "i32"
            attrs[(i,)] = ALIGNED
        else:  # a new kernel argument: say what it is above rather than guess
            raise KeyError(f"{fn.__name__}: no type known for argument {p.name!r}")
    return types, attrs


def constexprs(fn: JITFunction, case: Case) -> dict[str, object]:
    """The launcher's compile-time arguments (all mask features on) plus the config's tiles."""
    dtype = DTYPES[case.dtype]
    some = torch.empty(1)
    mask = fa.KernelMask(slopes=some, real=some, doc=some, kv_lo=some, q_hi=some)
    values = fa._statics(torch.empty(1, 1, 1, case.head_dim, dtype=dtype), mask)
    values |= {"BLOCK_M": case.block_m, "BLOCK_N": case.block_n}
    return {p.name: values[p.name] for p in fn.params if p.is_constexpr}


def shared_bytes(case: Case) -> int:
    fn = kernels()[case.kernel][0]
    types, attrs = signature(fn, DTYPES[case.dtype])
    source = triton.compiler.ASTSource(fn=fn, signature=types, constexprs=constexprs(fn, case), attrs=attrs)
    options = {"num_warps": case.warps, "num_stages": case.stages}
    return triton.compile(source, target=GPUTarget("cuda", case.arch, 32), options=options).metadata.shared


def measure(todo: list[Case], jobs: int) -> list[dict]:
    """One row per case: its fields, shared bytes, the arch's limit and whether it fits."""
    # fork: the workers start with torch and triton imported (this process has only imported them)
    with ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("fork")) as pool:
        shared = list(pool.map(shared_bytes, todo))
    limits = [SHARED_LIMITS[c.arch] for c in todo]
    return [
        asdict(c) | {"shared": s, "limit": lim, "fits": s <= lim}
        for c, s, lim in zip(todo, shared, limits, strict=True)
    ]


def table(rows: list[dict]) -> str:
    header = ["arch", "kernel", "head dim", "dtype", "BLOCK_M", "BLOCK_N", "warps", "stages"]
    header += ["shared bytes", "fits"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        cells = [f"sm_{r['arch']}", r["kernel"], r["head_dim"], r["dtype"], r["block_m"], r["block_n"] or "-"]
        cells += [r["warps"], r["stages"], f"{r['shared']:,}", "yes" if r["fits"] else "**no**"]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--archs", type=int, nargs="+", choices=sorted(SHARED_LIMITS), default=[80, 90])
    p.add_argument("--head-dims", type=int, nargs="+", default=[64, 80, 128])
    p.add_argument("--dtypes", nargs="+", choices=list(DTYPES), default=["bf16", "fp16"])
    p.add_argument("--kernels", nargs="+", choices=list(kernels()), help="default: all")
    p.add_argument("--last", action="store_true", help="only the last config of each list")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="compiler processes")
    p.add_argument("--json", action="store_true", help="print JSON rows instead of a Markdown table")
    args = p.parse_args()
    wanted = args.kernels or list(kernels())
    todo = [c for c in cases(args.archs, args.head_dims, args.dtypes, args.last) if c.kernel in wanted]
    rows = measure(todo, args.jobs)
    print(json.dumps(rows) if args.json else table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
