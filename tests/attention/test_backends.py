"""Every attention backend computes what the `torch` (SDPA + dense bias) backend computes."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from replitlm.attention import AttentionMask, alibi_slopes, get_backend
from replitlm.attention.flash import _segments
from tests.conftest import tiny_model

HAS_FLASH = importlib.util.find_spec("flash_attn") is not None


def qkv(b: int, h: int, s: int, d: int, dtype=torch.float32, device="cpu", seed: int = 0):
    g = torch.Generator(device=device).manual_seed(seed)
    return [
        torch.randn(b, h, s, d, generator=g, dtype=dtype, device=device).requires_grad_() for _ in range(3)
    ]


def masks(b: int, h: int, s: int, device="cpu") -> dict[str, AttentionMask]:
    slopes = alibi_slopes(h, device=device)
    pad = torch.ones(b, s, dtype=torch.bool, device=device)
    pad[0, : s // 3] = False  # left padding in the first row
    sid = torch.zeros(b, s, dtype=torch.long, device=device)
    sid[:, s // 2 :] = 1
    sid[-1, (3 * s) // 4 :] = 2
    return {
        "causal": AttentionMask(b, s, s, slopes),
        "no-alibi": AttentionMask(b, s, s, None),
        "padding": AttentionMask(b, s, s, slopes, key_padding_mask=pad),
        "documents": AttentionMask(b, s, s, slopes, sequence_id=sid),
    }


def reference(mask: AttentionMask, q, k, v, scale: float):
    """Naive softmax attention in fp64 from the dense bias: the definition every backend must meet."""
    bias = mask.dense_bias().double()
    scores = q.double() @ k.double().transpose(-1, -2) * scale + bias
    return torch.softmax(scores, -1) @ v.double()


def real_rows(mask: AttentionMask) -> torch.Tensor:
    """[B, 1, S, 1] selector of query rows that have at least one visible key (pad queries have none)."""
    return mask.allowed().any(-1, keepdim=True).expand(mask.batch_size, 1, mask.q_len, 1)


@pytest.mark.parametrize("case", ["causal", "no-alibi", "padding", "documents"])
@pytest.mark.parametrize("impl", ["torch", "flex"])
def test_backend_matches_reference_forward_and_backward(impl: str, case: str) -> None:
    b, h, s, d = 2, 6, 37, 16  # odd length, non-power-of-two heads
    mask = masks(b, h, s)[case]
    scale = d**-0.5
    q, k, v = qkv(b, h, s, d)
    out = get_backend(impl).build(mask, scale)(q, k, v, 0.0)
    expected = reference(mask, q, k, v, scale)
    rows = real_rows(mask)
    torch.testing.assert_close(out.double() * rows, expected * rows, rtol=1e-4, atol=1e-5)
    grad_out = torch.randn_like(out) * rows
    grads = torch.autograd.grad(out, (q, k, v), grad_out)
    expected_grads = torch.autograd.grad(expected, (q, k, v), grad_out.double())
    for got, want in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_torch_backend_decode_step_is_bottom_right_aligned() -> None:
    b, h, s, d = 2, 4, 12, 8
    q, k, v = qkv(b, h, s, d)
    full_mask = AttentionMask(b, s, s, alibi_slopes(h))
    full = get_backend("torch").build(full_mask, 0.3)(q, k, v, 0.0)
    step_mask = AttentionMask(b, 3, s, alibi_slopes(h))
    step = get_backend("torch").build(step_mask, 0.3)(q[:, :, -3:], k, v, 0.0)
    torch.testing.assert_close(step, full[:, :, -3:])


def test_torch_backend_in_bf16_computes_in_fp32() -> None:
    b, h, s, d = 1, 4, 300, 16
    q, k, v = qkv(b, h, s, d)
    mask = AttentionMask(b, s, s, alibi_slopes(h))
    exact = reference(mask, q, k, v, 0.25)
    low = get_backend("torch").build(mask, 0.25)(*(t.bfloat16() for t in (q, k, v)), 0.0)
    assert low.dtype == torch.bfloat16
    # bf16 inputs and output rounding only: no error from a bf16 bias or softmax
    assert (low.double() - exact).abs().max() < 0.05


def test_flash_segments_cover_rows_and_documents() -> None:
    pad = torch.tensor([[False, False, True, True, True], [True, True, True, True, True]])
    sid = torch.tensor([[0, 0, 0, 1, 1], [0, 0, 1, 1, 2]])
    index, cu_seqlens, max_len = _segments(AttentionMask(2, 5, 5, None, pad, sid))
    assert index.tolist() == [2, 3, 4, 5, 6, 7, 8, 9]
    assert cu_seqlens.tolist() == [0, 1, 3, 5, 7, 8]  # [2] [3,4] | [5,6] [7,8] [9]
    assert max_len == 2


def test_unavailable_backends_say_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    with monkeypatch.context() as m:  # a machine without a GPU or Triton's interpreter
        m.delenv("TRITON_INTERPRET", raising=False)
        m.setattr(torch.cuda, "is_available", lambda: False)
        with pytest.raises(RuntimeError, match=r"attn_impl 'triton' needs a CUDA GPU.*use attn_impl 'torch'"):
            get_backend("triton")
    if not HAS_FLASH:
        with pytest.raises(ImportError, match=r"flash-attn >= 2\.4"):
            get_backend("flash")
    with pytest.raises(ValueError, match="not one of"):
        get_backend("xformers")


def test_flex_model_forward_backward_matches_torch_model() -> None:
    torch_model = tiny_model(n_heads=5, attn_config={"attn_uses_sequence_id": True}).train()
    flex_model = tiny_model(
        n_heads=5, attn_config={"attn_uses_sequence_id": True, "attn_impl": "flex"}
    ).train()
    flex_model.load_state_dict(torch_model.state_dict())
    ids = torch.randint(3, 512, (2, 24))
    sid = torch.tensor([[0] * 10 + [1] * 14, [0] * 24])
    losses = [m(ids, sequence_id=sid, labels=ids).loss for m in (torch_model, flex_model)]
    torch.testing.assert_close(losses[0], losses[1], rtol=1e-5, atol=1e-5)
    for loss in losses:
        loss.backward()
    for (name, p), q in zip(torch_model.named_parameters(), flex_model.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-6, msg=name)


# -- CUDA: the compiled / fused paths, bf16 tolerances ----------------------------------------------------
@pytest.mark.gpu
@pytest.mark.parametrize("case", ["causal", "padding", "documents"])
@pytest.mark.parametrize("impl", ["flex", "flash"])
def test_cuda_backends_match_reference_in_bf16(impl: str, case: str) -> None:
    if impl == "flash" and not HAS_FLASH:
        pytest.skip("flash-attn is not installed")
    b, h, s, d = 2, 32, 1000, 80  # replit-code-v1-3b's head dim, a length that is no multiple of 128
    mask = masks(b, h, s, device="cuda")[case]
    q, k, v = qkv(b, h, s, d, dtype=torch.bfloat16, device="cuda")
    out = get_backend(impl).build(mask, d**-0.5)(q, k, v, 0.0)
    expected = reference(mask, q, k, v, d**-0.5)
    rows = real_rows(mask)
    assert ((out.double() - expected) * rows).abs().max() < 2e-2
    grad_out = torch.randn_like(out) * rows
    grads = torch.autograd.grad(out, (q, k, v), grad_out)
    expected_grads = torch.autograd.grad(expected, (q, k, v), grad_out.double())
    for got, want in zip(grads, expected_grads, strict=True):
        assert (got.double() - want).abs().max() / want.abs().max() < 2e-2
