"""Fused causal flash attention with ALiBi, key padding and packed documents, in Triton (forward and backward).

    out_i = sum_j softmax_j(scale * q_i.k_j + slope_h * (j - pos_i)) v_j   over the keys j that query i sees:
    j <= pos_i (causal, queries are the last q_len of k_len positions), key j is real (key padding) and in
    the query's document (sequence_id). The ALiBi distance is the plain position difference, as in
    `AttentionMask.dense_bias`.

FlashAttention-2 scheme. The forward streams key blocks through an online softmax and keeps only the
log-sum-exp per query (O(S) extra memory). The backward recomputes the probabilities from it: one kernel per
key block accumulates dK and dV, one per query block accumulates dQ; no atomics, so it is deterministic.
Scores are kept in log2 units (scale and slopes pre-multiplied by log2 e): one exp2 per score.

Key blocks above the causal diagonal are never visited, blocks wholly below it skip the causal mask, and with
padding or (sorted) sequence_id the blocks before a query block's first visible key are skipped too.

Queries that see no key at all (left-padding positions) get a zero output and add nothing to any gradient,
as with the `flash` backend (the `torch` backend returns the mean of v there). The model never reads them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import triton
import triton.language as tl
from torch import Tensor

LOG2E = 1.4426950408889634
# triton.jit reads TRITON_INTERPRET when the kernels below are decorated, so this module must agree with it.
INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"
AUTOTUNE = not INTERPRET and torch.cuda.is_available()
INTERPRET_BLOCK = 16  # the interpreter runs each program in numpy: small tiles keep tests fast
DELTA_BLOCK = 64  # rows per program of the (cheap, untuned) delta kernel on a GPU
DTYPES = {torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}
MAX_HEAD_DIM = 128


# -- inputs derived from the mask, built once per forward call -------------------------------------------------
@dataclass(frozen=True)
class KernelMask:
    """The kernel's view of an attention mask; every layer of one forward call shares it."""

    slopes: Tensor | None  # [H] fp32 ALiBi slopes times log2 e
    real: Tensor | None  # [B, k_len] int8, 1 = real key
    doc: Tensor | None  # [B, k_len] int32 document id (only when q_len == k_len)
    kv_lo: Tensor | None  # [B, q_len] int32: query i sees no key before kv_lo[i]
    q_hi: Tensor | None  # [B, k_len] int32: key j is seen by no query from q_hi[j] on


def kernel_mask(
    q_len: int,
    k_len: int,
    alibi_slopes: Tensor | None = None,
    key_padding_mask: Tensor | None = None,
    sequence_id: Tensor | None = None,
) -> KernelMask:
    """Kernel inputs for a causal mask with optional ALiBi, key padding [B, k_len] and sequence_id [B, q_len]."""
    slopes = None if alibi_slopes is None else (alibi_slopes.float() * LOG2E).contiguous()
    if key_padding_mask is None and sequence_id is None:
        return KernelMask(slopes, None, None, None, None)
    some = key_padding_mask if key_padding_mask is not None else sequence_id
    b, device = some.shape[0], some.device
    kv_lo = torch.zeros(b, q_len, dtype=torch.long, device=device)
    q_hi = torch.full((b, k_len), q_len, dtype=torch.long, device=device)
    real = doc = None
    if key_padding_mask is not None:
        real = key_padding_mask.to(torch.int8).contiguous()
        first_real = key_padding_mask.to(torch.int8).argmax(
            1, keepdim=True
        )  # all-padding row: 0, still a bound
        kv_lo = kv_lo.maximum(first_real)
    if sequence_id is not None:
        if q_len != k_len:
            raise ValueError(f"sequence_id needs as many queries as keys, got q_len={q_len}, k_len={k_len}")
        sid = sequence_id.long().contiguous()
        doc = sid.to(torch.int32)
        # Documents are runs when a row is sorted; then each token's run bounds the blocks worth visiting.
        # Unsorted rows (legal, just unusual) get no skipping.
        sorted_rows = (sid[:, 1:] >= sid[:, :-1]).all(1, keepdim=True)
        run_start = torch.searchsorted(sid, sid, right=False)
        run_end = torch.searchsorted(sid, sid, right=True)
        kv_lo = kv_lo.maximum(torch.where(sorted_rows, run_start, 0))
        q_hi = torch.where(sorted_rows, run_end, q_len)
    return KernelMask(slopes, real, doc, kv_lo.to(torch.int32), q_hi.to(torch.int32))


# -- kernels ---------------------------------------------------------------------------------------------------
def _configs(shapes: list[tuple[int, int, int, int]]) -> list[triton.Config]:
    return [triton.Config({"BLOCK_M": m, "BLOCK_N": n}, num_warps=w, num_stages=s) for m, n, w, s in shapes]


def _tuned(shapes: list[tuple[int, int, int, int]]):
    """Autotune on a GPU (keyed on the rounded lengths and the head dim); fixed small tiles when interpreted.

    Without a GPU triton's autotuner cannot even be built, so the module still imports (its kernels then
    refuse CPU tensors in `check_inputs`).
    """
    if not AUTOTUNE:
        return lambda kernel: kernel
    return triton.autotune(configs=_configs(shapes), key=["Q_BUCKET", "K_BUCKET", "HEAD_DIM"])


# (BLOCK_M queries, BLOCK_N keys, warps, stages). Configs over a GPU's shared memory are skipped by the
# autotuner; each list keeps one that fits fp32 inputs with head dim 128 on an A100 (163 KB), the last, and
# bf16/fp16 fit them all on A100 and H100 (scripts/bench/triton_shared_memory.py compiles them all on CPU).
FWD_CONFIGS = [
    (128, 64, 4, 3),
    (128, 64, 8, 3),
    (128, 128, 8, 3),
    (128, 32, 4, 4),
    (64, 64, 4, 4),
    (64, 32, 4, 2),
]
# The 3-stage tails of the two backward lists are for fp32 on an A100: every other backward config of a
# head dim over 64 needs more than its 163 KB there.
DKDV_CONFIGS = [
    (32, 128, 4, 3),
    (32, 128, 8, 3),
    (64, 128, 8, 3),
    (32, 64, 4, 4),
    (64, 64, 4, 3),
    (32, 64, 4, 3),
]
DQ_CONFIGS = [(128, 32, 4, 3), (128, 64, 8, 3), (64, 64, 4, 3), (64, 32, 4, 4), (64, 32, 4, 3)]


@triton.jit
def _load_tile(
    ptrs, rows, n_rows, offs_d, HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, CHECK_ROWS: tl.constexpr
):
    """A [rows, BLOCK_D] tile: rows past n_rows (if they can occur) and padded head dims read as 0."""
    if CHECK_ROWS:
        if BLOCK_D == HEAD_DIM:
            x = tl.load(ptrs, mask=rows[:, None] < n_rows, other=0.0)
        else:
            x = tl.load(ptrs, mask=(rows[:, None] < n_rows) & (offs_d[None, :] < HEAD_DIM), other=0.0)
    else:
        if BLOCK_D == HEAD_DIM:
            x = tl.load(ptrs)
        else:
            x = tl.load(ptrs, mask=offs_d[None, :] < HEAD_DIM, other=0.0)
    return x


@triton.jit
def _bias_and_mask(
    s, q_pos, k_pos, q_doc, slope, Real, Doc, b, k_len,
    HAS_ALIBI: tl.constexpr, CAUSAL: tl.constexpr, HAS_PAD: tl.constexpr, HAS_SID: tl.constexpr,
):  # fmt: skip
    """Scores plus ALiBi, -inf where the key is hidden. q_pos and k_pos broadcast to the orientation of s."""
    if HAS_ALIBI:
        s += slope * (k_pos - q_pos).to(tl.float32)
    if CAUSAL:
        s = tl.where(k_pos <= q_pos, s, float("-inf"))
    if HAS_PAD:
        real = tl.load(Real + b * k_len + k_pos, mask=k_pos < k_len, other=0)
        s = tl.where(real != 0, s, float("-inf"))
    if HAS_SID:
        k_doc = tl.load(Doc + b * k_len + k_pos, mask=k_pos < k_len, other=-2)  # never a query's -1
        s = tl.where(k_doc == q_doc, s, float("-inf"))
    return s


@triton.jit
def _key_range(
    KvLo, b, rows, q_len, k_len, start_m, HAS_MASK: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr
):
    """Key blocks for a query block: [lo, mid) lie wholly below the diagonal, [mid, hi) straddle it."""
    offset = k_len - q_len
    hi = tl.minimum(k_len, offset + (start_m + 1) * BLOCK_M)
    mid = (offset + start_m * BLOCK_M) // BLOCK_N * BLOCK_N
    lo = 0
    if HAS_MASK:
        lo = tl.min(tl.load(KvLo + b * q_len + rows, mask=rows < q_len, other=k_len), 0) // BLOCK_N * BLOCK_N
        mid = tl.maximum(mid, lo)
    return lo, mid, hi


@triton.jit
def _fwd_blocks(
    acc, l_i, m_i, q, q_pos, q_doc, K, V, stride_kn, stride_vn, Real, Doc, b, k_len, slope, qk_scale, lo, hi,
    offs_d, HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, CAUSAL: tl.constexpr,
    HAS_ALIBI: tl.constexpr, HAS_PAD: tl.constexpr, HAS_SID: tl.constexpr, PRECISION: tl.constexpr,
):  # fmt: skip
    """Online softmax over key blocks [lo, hi): running max m_i, normaliser l_i and output acc (log2 units)."""
    for start_n in range(lo, hi, BLOCK_N):
        cols = start_n + tl.arange(0, BLOCK_N)
        k = _load_tile(
            K + cols[:, None] * stride_kn + offs_d[None, :], cols, k_len, offs_d, HEAD_DIM, BLOCK_D, CAUSAL
        )
        v = _load_tile(
            V + cols[:, None] * stride_vn + offs_d[None, :], cols, k_len, offs_d, HEAD_DIM, BLOCK_D, CAUSAL
        )
        s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * qk_scale
        s = _bias_and_mask(
            s, q_pos[:, None], cols[None, :], q_doc[:, None], slope, Real, Doc, b, k_len,
            HAS_ALIBI, CAUSAL, HAS_PAD, HAS_SID,
        )  # fmt: skip
        m_new = tl.maximum(m_i, tl.max(s, 1))
        p = tl.math.exp2(s - m_new[:, None])
        alpha = tl.math.exp2(m_i - m_new)
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
        m_i = m_new
    return acc, l_i, m_i


@_tuned(FWD_CONFIGS)
@triton.jit
def _fwd_kernel(
    Q, K, V, Out, LSE, Slopes, Real, Doc, KvLo,
    stride_qb, stride_qh, stride_qm, stride_kb, stride_kh, stride_kn, stride_vb, stride_vh, stride_vn,
    stride_ob, stride_oh, stride_om,
    n_heads, q_len, k_len, qk_scale, Q_BUCKET, K_BUCKET,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, HAS_ALIBI: tl.constexpr, HAS_PAD: tl.constexpr,
    HAS_SID: tl.constexpr, PRECISION: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):  # fmt: skip
    start_m, bh = tl.program_id(0), tl.program_id(1)
    b, h = bh // n_heads, bh % n_heads
    rows = start_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    q_pos = rows + (k_len - q_len)
    b64 = b.to(tl.int64)  # batch offsets can pass 2^31 elements
    Q += b64 * stride_qb + h * stride_qh
    K += b64 * stride_kb + h * stride_kh
    V += b64 * stride_vb + h * stride_vh
    q = _load_tile(
        Q + rows[:, None] * stride_qm + offs_d[None, :], rows, q_len, offs_d, HEAD_DIM, BLOCK_D, True
    )
    slope = tl.load(Slopes + h) if HAS_ALIBI else 0.0
    q_doc = tl.load(Doc + b * k_len + q_pos, mask=rows < q_len, other=-1) if HAS_SID else rows

    # A finite start for the running max: rows whose keys so far are all hidden stay exactly 0, never NaN.
    m_i = tl.full([BLOCK_M], -1.0e30, dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    lo, mid, hi = _key_range(KvLo, b, rows, q_len, k_len, start_m, HAS_PAD | HAS_SID, BLOCK_M, BLOCK_N)
    acc, l_i, m_i = _fwd_blocks(
        acc, l_i, m_i, q, q_pos, q_doc, K, V, stride_kn, stride_vn, Real, Doc, b, k_len, slope, qk_scale, lo, mid,
        offs_d, HEAD_DIM, BLOCK_D, BLOCK_N, False, HAS_ALIBI, HAS_PAD, HAS_SID, PRECISION,
    )  # fmt: skip
    acc, l_i, m_i = _fwd_blocks(
        acc, l_i, m_i, q, q_pos, q_doc, K, V, stride_kn, stride_vn, Real, Doc, b, k_len, slope, qk_scale, mid, hi,
        offs_d, HEAD_DIM, BLOCK_D, BLOCK_N, True, HAS_ALIBI, HAS_PAD, HAS_SID, PRECISION,
    )  # fmt: skip

    seen = l_i > 0  # false only for queries that see no key
    l_safe = tl.where(seen, l_i, 1.0)
    out = acc / l_safe[:, None]
    Out += b64 * stride_ob + h * stride_oh
    o_mask = (rows[:, None] < q_len) & (offs_d[None, :] < HEAD_DIM)
    tl.store(Out + rows[:, None] * stride_om + offs_d[None, :], out.to(Out.dtype.element_ty), mask=o_mask)
    # +inf for unseeing rows makes every recomputed probability exp2(s - lse) exactly 0 in the backward.
    lse = tl.where(seen, m_i + tl.math.log2(l_safe), float("inf"))
    tl.store(LSE + bh * q_len + rows, lse, mask=rows < q_len)


@triton.jit
def _delta_kernel(
    Out, DO, Delta, stride_b, stride_h, stride_m, n_heads, q_len,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr,
):  # fmt: skip
    """delta_i = dO_i . O_i = sum_j P_ij dP_ij: the softmax-backward term shared by dQ and dK."""
    start_m, bh = tl.program_id(0), tl.program_id(1)
    b, h = bh // n_heads, bh % n_heads
    rows = start_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    offs = b.to(tl.int64) * stride_b + h * stride_h + rows[:, None] * stride_m + offs_d[None, :]
    o = _load_tile(Out + offs, rows, q_len, offs_d, HEAD_DIM, BLOCK_D, True).to(tl.float32)
    do = _load_tile(DO + offs, rows, q_len, offs_d, HEAD_DIM, BLOCK_D, True).to(tl.float32)
    tl.store(Delta + bh * q_len + rows, tl.sum(o * do, 1), mask=rows < q_len)


@triton.jit
def _dkdv_blocks(
    dk, dv, k, v, k_pos, Q, DO, LSE, Delta, Doc, Real, stride_qm, stride_dom, b, bh, q_len, k_len, slope,
    qk_scale, lo, hi, offs_d, HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr,
    CAUSAL: tl.constexpr, HAS_ALIBI: tl.constexpr, HAS_PAD: tl.constexpr, HAS_SID: tl.constexpr,
    PRECISION: tl.constexpr,
):  # fmt: skip
    """dV += P^T dO and dK += dS^T Q over query blocks [lo, hi), with P recomputed transposed ([keys, queries])."""
    offset = k_len - q_len
    for start_m in range(lo, hi, BLOCK_M):
        rows = start_m + tl.arange(0, BLOCK_M)
        q = _load_tile(
            Q + rows[:, None] * stride_qm + offs_d[None, :], rows, q_len, offs_d, HEAD_DIM, BLOCK_D, True
        )
        do = _load_tile(
            DO + rows[:, None] * stride_dom + offs_d[None, :], rows, q_len, offs_d, HEAD_DIM, BLOCK_D, True
        )
        # Rows past q_len get lse = +inf, hence P = 0: the query tail needs no mask of its own.
        lse = tl.load(LSE + bh * q_len + rows, mask=rows < q_len, other=float("inf"))
        delta = tl.load(Delta + bh * q_len + rows, mask=rows < q_len, other=0.0)
        q_pos = rows + offset
        q_doc = tl.load(Doc + b * k_len + q_pos, mask=rows < q_len, other=-1) if HAS_SID else rows
        s_t = tl.dot(k, tl.trans(q), input_precision=PRECISION) * qk_scale
        s_t = _bias_and_mask(
            s_t, q_pos[None, :], k_pos[:, None], q_doc[None, :], slope, Real, Doc, b, k_len,
            HAS_ALIBI, CAUSAL, HAS_PAD, HAS_SID,
        )  # fmt: skip
        p_t = tl.math.exp2(s_t - lse[None, :])
        dv += tl.dot(p_t.to(do.dtype), do, input_precision=PRECISION)
        dp_t = tl.dot(v, tl.trans(do), input_precision=PRECISION)
        ds_t = p_t * (dp_t - delta[None, :])
        dk += tl.dot(ds_t.to(q.dtype), q, input_precision=PRECISION)
    return dk, dv


@_tuned(DKDV_CONFIGS)
@triton.jit
def _dkdv_kernel(
    Q, K, V, DO, DK, DV, LSE, Delta, Slopes, Real, Doc, QHi,
    stride_qb, stride_qh, stride_qm, stride_kb, stride_kh, stride_kn, stride_vb, stride_vh, stride_vn,
    stride_dob, stride_doh, stride_dom, stride_dkb, stride_dkh, stride_dkn,
    n_heads, q_len, k_len, qk_scale, sm_scale, Q_BUCKET, K_BUCKET,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, HAS_ALIBI: tl.constexpr, HAS_PAD: tl.constexpr,
    HAS_SID: tl.constexpr, PRECISION: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):  # fmt: skip
    start_n, bh = tl.program_id(0), tl.program_id(1)
    b, h = bh // n_heads, bh % n_heads
    k_pos = start_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    b64 = b.to(tl.int64)
    Q += b64 * stride_qb + h * stride_qh
    DO += b64 * stride_dob + h * stride_doh
    K += b64 * stride_kb + h * stride_kh
    V += b64 * stride_vb + h * stride_vh
    k = _load_tile(
        K + k_pos[:, None] * stride_kn + offs_d[None, :], k_pos, k_len, offs_d, HEAD_DIM, BLOCK_D, True
    )
    v = _load_tile(
        V + k_pos[:, None] * stride_vn + offs_d[None, :], k_pos, k_len, offs_d, HEAD_DIM, BLOCK_D, True
    )
    slope = tl.load(Slopes + h) if HAS_ALIBI else 0.0

    # Query blocks that can see this key block: from the diagonal down to the end of its last document.
    # Those from `mid` on see every key of the block causally and skip the causal mask.
    offset = k_len - q_len
    lo = tl.maximum(start_n * BLOCK_N - offset, 0) // BLOCK_M * BLOCK_M
    mid = tl.cdiv(tl.maximum(start_n * BLOCK_N + BLOCK_N - 1 - offset, 0), BLOCK_M) * BLOCK_M
    hi = q_len
    if HAS_SID:
        hi = tl.minimum(hi, tl.max(tl.load(QHi + b * k_len + k_pos, mask=k_pos < k_len, other=0), 0))
    if HAS_PAD:  # a block of padding keys is seen by nobody
        n_real = tl.sum(tl.load(Real + b * k_len + k_pos, mask=k_pos < k_len, other=0).to(tl.int32), 0)
        hi = tl.where(n_real > 0, hi, 0)

    dk = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)
    dv = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)
    dk, dv = _dkdv_blocks(
        dk, dv, k, v, k_pos, Q, DO, LSE, Delta, Doc, Real, stride_qm, stride_dom, b, bh, q_len, k_len, slope,
        qk_scale, lo, tl.minimum(mid, hi), offs_d, HEAD_DIM, BLOCK_D, BLOCK_M, True, HAS_ALIBI, HAS_PAD, HAS_SID,
        PRECISION,
    )  # fmt: skip
    dk, dv = _dkdv_blocks(
        dk, dv, k, v, k_pos, Q, DO, LSE, Delta, Doc, Real, stride_qm, stride_dom, b, bh, q_len, k_len, slope,
        qk_scale, mid, hi, offs_d, HEAD_DIM, BLOCK_D, BLOCK_M, False, HAS_ALIBI, HAS_PAD, HAS_SID, PRECISION,
    )  # fmt: skip

    mask = (k_pos[:, None] < k_len) & (offs_d[None, :] < HEAD_DIM)
    offs = b64 * stride_dkb + h * stride_dkh + k_pos[:, None] * stride_dkn + offs_d[None, :]
    tl.store(DK + offs, (dk * sm_scale).to(DK.dtype.element_ty), mask=mask)
    tl.store(DV + offs, dv.to(DV.dtype.element_ty), mask=mask)


@triton.jit
def _dq_blocks(
    dq, q, do, lse, delta, q_pos, q_doc, K, V, stride_kn, stride_vn, Real, Doc, b, k_len, slope, qk_scale, lo,
    hi, offs_d, HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, CAUSAL: tl.constexpr,
    HAS_ALIBI: tl.constexpr, HAS_PAD: tl.constexpr, HAS_SID: tl.constexpr, PRECISION: tl.constexpr,
):  # fmt: skip
    """dQ += dS K over key blocks [lo, hi), dS = P * (dP - delta), P recomputed from the saved lse."""
    for start_n in range(lo, hi, BLOCK_N):
        cols = start_n + tl.arange(0, BLOCK_N)
        k = _load_tile(
            K + cols[:, None] * stride_kn + offs_d[None, :], cols, k_len, offs_d, HEAD_DIM, BLOCK_D, CAUSAL
        )
        v = _load_tile(
            V + cols[:, None] * stride_vn + offs_d[None, :], cols, k_len, offs_d, HEAD_DIM, BLOCK_D, CAUSAL
        )
        s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * qk_scale
        s = _bias_and_mask(
            s, q_pos[:, None], cols[None, :], q_doc[:, None], slope, Real, Doc, b, k_len,
            HAS_ALIBI, CAUSAL, HAS_PAD, HAS_SID,
        )  # fmt: skip
        p = tl.math.exp2(s - lse[:, None])
        dp = tl.dot(do, tl.trans(v), input_precision=PRECISION)
        ds = p * (dp - delta[:, None])
        dq += tl.dot(ds.to(k.dtype), k, input_precision=PRECISION)
    return dq


@_tuned(DQ_CONFIGS)
@triton.jit
def _dq_kernel(
    Q, K, V, DO, DQ, LSE, Delta, Slopes, Real, Doc, KvLo,
    stride_qb, stride_qh, stride_qm, stride_kb, stride_kh, stride_kn, stride_vb, stride_vh, stride_vn,
    stride_dob, stride_doh, stride_dom,
    n_heads, q_len, k_len, qk_scale, sm_scale, Q_BUCKET, K_BUCKET,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, HAS_ALIBI: tl.constexpr, HAS_PAD: tl.constexpr,
    HAS_SID: tl.constexpr, PRECISION: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):  # fmt: skip
    start_m, bh = tl.program_id(0), tl.program_id(1)
    b, h = bh // n_heads, bh % n_heads
    rows = start_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    q_pos = rows + (k_len - q_len)
    b64 = b.to(tl.int64)
    Q += b64 * stride_qb + h * stride_qh
    K += b64 * stride_kb + h * stride_kh
    V += b64 * stride_vb + h * stride_vh
    DO += b64 * stride_dob + h * stride_doh
    DQ += b64 * stride_dob + h * stride_doh  # dQ has the layout of dO (both contiguous [B, H, q_len, hd])
    q = _load_tile(
        Q + rows[:, None] * stride_qm + offs_d[None, :], rows, q_len, offs_d, HEAD_DIM, BLOCK_D, True
    )
    do = _load_tile(
        DO + rows[:, None] * stride_dom + offs_d[None, :], rows, q_len, offs_d, HEAD_DIM, BLOCK_D, True
    )
    lse = tl.load(LSE + bh * q_len + rows, mask=rows < q_len, other=float("inf"))
    delta = tl.load(Delta + bh * q_len + rows, mask=rows < q_len, other=0.0)
    slope = tl.load(Slopes + h) if HAS_ALIBI else 0.0
    q_doc = tl.load(Doc + b * k_len + q_pos, mask=rows < q_len, other=-1) if HAS_SID else rows

    dq = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    lo, mid, hi = _key_range(KvLo, b, rows, q_len, k_len, start_m, HAS_PAD | HAS_SID, BLOCK_M, BLOCK_N)
    dq = _dq_blocks(
        dq, q, do, lse, delta, q_pos, q_doc, K, V, stride_kn, stride_vn, Real, Doc, b, k_len, slope, qk_scale, lo,
        mid, offs_d, HEAD_DIM, BLOCK_D, BLOCK_N, False, HAS_ALIBI, HAS_PAD, HAS_SID, PRECISION,
    )  # fmt: skip
    dq = _dq_blocks(
        dq, q, do, lse, delta, q_pos, q_doc, K, V, stride_kn, stride_vn, Real, Doc, b, k_len, slope, qk_scale, mid,
        hi, offs_d, HEAD_DIM, BLOCK_D, BLOCK_N, True, HAS_ALIBI, HAS_PAD, HAS_SID, PRECISION,
    )  # fmt: skip
    mask = (rows[:, None] < q_len) & (offs_d[None, :] < HEAD_DIM)
    tl.store(
        DQ + rows[:, None] * stride_dom + offs_d[None, :], (dq * sm_scale).to(DQ.dtype.element_ty), mask=mask
    )


# -- launchers -------------------------------------------------------------------------------------------------
def _bucket(n: int) -> int:
    """Autotune key for a length: a new power of two re-tunes, a new decode step does not."""
    return max(16, triton.next_power_of_2(n))


def _statics(q: Tensor, mask: KernelMask) -> dict:
    """Compile-time arguments shared by all kernels (and the fixed tiles under the interpreter)."""
    d = q.shape[-1]
    statics = {
        "HEAD_DIM": d,
        "BLOCK_D": max(16, triton.next_power_of_2(d)),  # tl.arange needs a power of two: 80 runs as 128
        "HAS_ALIBI": mask.slopes is not None,
        "HAS_PAD": mask.real is not None,
        "HAS_SID": mask.doc is not None,
        # fp32 inputs get true fp32 products (tf32 would miss the fp32 reference by ~1e-3).
        "PRECISION": "ieee" if q.dtype == torch.float32 else "tf32",
    }
    if not AUTOTUNE:
        statics |= {"BLOCK_M": INTERPRET_BLOCK, "BLOCK_N": INTERPRET_BLOCK}
    return statics


def _ptr(t: Tensor | None, fallback: Tensor) -> Tensor:
    return fallback if t is None else t  # an absent input is never read (its HAS_* flag is off)


def _forward(q: Tensor, k: Tensor, v: Tensor, mask: KernelMask, scale: float) -> tuple[Tensor, Tensor]:
    b, h, q_len, d = q.shape
    k_len = k.shape[2]
    o = torch.empty(b, h, q_len, d, device=q.device, dtype=q.dtype)
    lse = torch.empty(b, h, q_len, device=q.device, dtype=torch.float32)

    def grid(meta: dict) -> tuple[int, int]:
        return (triton.cdiv(q_len, meta["BLOCK_M"]), b * h)

    _fwd_kernel[grid](
        q, k, v, o, lse, _ptr(mask.slopes, lse), _ptr(mask.real, lse), _ptr(mask.doc, lse), _ptr(mask.kv_lo, lse),
        *q.stride()[:3], *k.stride()[:3], *v.stride()[:3], *o.stride()[:3],
        h, q_len, k_len, scale * LOG2E, _bucket(q_len), _bucket(k_len),
        **_statics(q, mask),
    )  # fmt: skip
    return o, lse


def _backward(
    do: Tensor, q: Tensor, k: Tensor, v: Tensor, o: Tensor, lse: Tensor, mask: KernelMask, scale: float
) -> tuple[Tensor, Tensor, Tensor]:
    b, h, q_len, d = q.shape
    k_len = k.shape[2]
    do = do.contiguous()  # o's layout, so the delta kernel takes one set of strides
    statics = _statics(q, mask)
    delta = torch.empty_like(lse)
    delta_block = INTERPRET_BLOCK if INTERPRET else DELTA_BLOCK
    _delta_kernel[(triton.cdiv(q_len, delta_block), b * h)](
        o, do, delta, *o.stride()[:3], h, q_len,
        HEAD_DIM=d, BLOCK_D=statics["BLOCK_D"], BLOCK_M=delta_block,
    )  # fmt: skip

    dq = torch.empty_like(do)
    dk = torch.empty(b, h, k_len, d, device=q.device, dtype=q.dtype)
    dv = torch.empty_like(dk)
    common = (h, q_len, k_len, scale * LOG2E, scale, _bucket(q_len), _bucket(k_len))
    slopes, real, doc = (_ptr(t, lse) for t in (mask.slopes, mask.real, mask.doc))

    def key_grid(meta: dict) -> tuple[int, int]:
        return (triton.cdiv(k_len, meta["BLOCK_N"]), b * h)

    _dkdv_kernel[key_grid](
        q, k, v, do, dk, dv, lse, delta, slopes, real, doc, _ptr(mask.q_hi, lse),
        *q.stride()[:3], *k.stride()[:3], *v.stride()[:3], *do.stride()[:3], *dk.stride()[:3],
        *common, **statics,
    )  # fmt: skip

    def query_grid(meta: dict) -> tuple[int, int]:
        return (triton.cdiv(q_len, meta["BLOCK_M"]), b * h)

    _dq_kernel[query_grid](
        q, k, v, do, dq, lse, delta, slopes, real, doc, _ptr(mask.kv_lo, lse),
        *q.stride()[:3], *k.stride()[:3], *v.stride()[:3], *do.stride()[:3],
        *common, **statics,
    )  # fmt: skip
    return dq, dk, dv


class _FlashAlibi(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q: Tensor, k: Tensor, v: Tensor, mask: KernelMask, scale: float) -> Tensor:
        o, lse = _forward(q, k, v, mask, scale)
        ctx.save_for_backward(q, k, v, o, lse)
        ctx.mask, ctx.scale = mask, scale
        return o

    @staticmethod
    def backward(ctx, do: Tensor) -> tuple[Tensor | None, ...]:
        q, k, v, o, lse = ctx.saved_tensors
        dq, dk, dv = _backward(do, q, k, v, o, lse, ctx.mask, ctx.scale)
        return dq, dk, dv, None, None


def check_inputs(q: Tensor, k: Tensor, v: Tensor) -> None:
    """Raise ValueError naming what the kernel cannot take."""
    if q.dtype not in DTYPES or k.dtype != q.dtype or v.dtype != q.dtype:
        raise ValueError(
            f"flash_alibi_attention takes q, k, v of one dtype among {', '.join(DTYPES.values())}; "
            f"got {q.dtype}, {k.dtype}, {v.dtype}"
        )
    if q.dim() != 4 or k.shape != v.shape or k.shape[:2] != q.shape[:2] or k.shape[3] != q.shape[3]:
        raise ValueError(
            f"expected q [B, H, q_len, hd] and k, v [B, H, k_len, hd], got {tuple(q.shape)}, "
            f"{tuple(k.shape)}, {tuple(v.shape)}"
        )
    if q.shape[2] > k.shape[2]:
        raise ValueError(f"more queries ({q.shape[2]}) than keys ({k.shape[2]}): queries are the last keys")
    if q.shape[3] > MAX_HEAD_DIM:
        raise ValueError(
            f"head dim {q.shape[3]} is not supported: the kernel takes head dims up to {MAX_HEAD_DIM}"
        )
    if not q.is_cuda and not INTERPRET:
        raise ValueError(
            f"flash_alibi_attention runs on CUDA tensors (or anywhere with TRITON_INTERPRET=1), got {q.device}"
        )


def flash_alibi_attention(q: Tensor, k: Tensor, v: Tensor, softmax_scale: float, mask: KernelMask) -> Tensor:
    """Causal ALiBi attention of q [B, H, q_len, hd] over k, v [B, H, k_len, hd]; out like q.

    `mask` comes from `kernel_mask` (once per forward call). Differentiable in q, k and v.
    """
    check_inputs(q, k, v)
    q, k, v = (
        t if t.stride(-1) == 1 else t.contiguous() for t in (q, k, v)
    )  # the kernels assume unit stride
    return _FlashAlibi.apply(q, k, v, mask, softmax_scale)
