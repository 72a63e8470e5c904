"""Gradients against references: the fused cross-entropy against F.cross_entropy, and the whole model's
backward against transformers' MptForCausalLM (fp32), with masked labels, left padding and packed documents.

A loss whose scale is off (dividing by every row instead of the labelled ones) still trains under Lion or
AdamW, so "the loss falls" cannot catch it; these compare the gradients themselves.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from replitlm.model import CrossEntropy, causal_lm_loss
from tests.conftest import builtin_twin, tiny_model
from tests.test_model import left_padded, random_ids


def reference_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Next-token cross entropy by torch: logits shifted, mean over labelled targets."""
    return F.cross_entropy(logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten(), ignore_index=-100)


@pytest.mark.parametrize("masked", [0.0, 0.5, 0.9])
def test_fused_cross_entropy_gradient_equals_torchs(masked: float) -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 200, 300, generator=g, dtype=torch.float64) * 3  # more rows than the vocabulary
    assert 2 * CrossEntropy.ROWS < 3 * 199  # the loss and its backward work in blocks of rows: three here
    labels = torch.randint(0, 300, (3, 200), generator=g)
    labels[torch.rand(3, 200, generator=g) < masked] = -100
    ours = logits.clone().requires_grad_()
    ref = logits.clone().requires_grad_()
    causal_lm_loss(ours, labels).backward()
    reference_loss(ref, labels).backward()
    torch.testing.assert_close(ours.grad, ref.grad, rtol=1e-10, atol=1e-12)


def test_fused_cross_entropy_scales_by_the_incoming_gradient() -> None:
    logits = torch.randn(10, 50, dtype=torch.float64, requires_grad=True)
    targets = torch.tensor([1, -100, 3, -100, 5, 6, -100, 8, 9, 10])
    (CrossEntropy.apply(logits, targets) * 2.5).backward()
    ref = logits.detach().clone().requires_grad_()
    (F.cross_entropy(ref, targets, ignore_index=-100) * 2.5).backward()
    torch.testing.assert_close(logits.grad, ref.grad, rtol=1e-10, atol=1e-12)


def test_fused_cross_entropy_with_one_labelled_token_and_with_none() -> None:
    logits = torch.randn(2, 6, 30, dtype=torch.float64)
    labels = torch.full((2, 6), -100)
    labels[1, 3] = 7  # one target: the loss is its cross entropy, not half of it
    ours, ref = logits.clone().requires_grad_(), logits.clone().requires_grad_()
    loss = causal_lm_loss(ours, labels)
    loss.backward()
    reference_loss(ref, labels).backward()
    torch.testing.assert_close(loss, F.cross_entropy(logits[1, 2][None], torch.tensor([7])))
    torch.testing.assert_close(ours.grad, ref.grad, rtol=1e-10, atol=1e-12)
    nothing = logits.clone().requires_grad_()  # a batch whose labels are all masked: 0, not NaN
    loss = causal_lm_loss(nothing, torch.full((2, 6), -100))
    loss.backward()
    assert loss.item() == 0 and not nothing.grad.any()


def param_grads(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_model_gradients_equal_builtin_mpt_with_padding_and_masked_prompts() -> None:
    model = tiny_model(n_heads=4)
    ref = builtin_twin(model)
    ids, mask = left_padded(random_ids(3, 24), [6, 0, 10])
    labels = ids.masked_fill(mask == 0, -100)
    labels[:, :14] = -100  # a prompt: the loss falls on the last 10 tokens of each row
    model(ids, attention_mask=mask, labels=labels).loss.backward()
    ref(ids, attention_mask=mask, labels=labels).loss.backward()
    ours, theirs = param_grads(model), param_grads(ref)
    assert ours.keys() <= theirs.keys() and len(ours) == len(list(model.parameters()))
    for name, grad in ours.items():
        torch.testing.assert_close(grad, theirs[name], rtol=1e-4, atol=1e-6, msg=name)


def test_packed_documents_give_the_gradients_of_separate_documents() -> None:
    """One packed row with sequence_id == the token-weighted mean of the documents' own losses (the label at
    each document's start is masked: nothing in the document predicts it)."""
    model = tiny_model(n_heads=4, attn_config={"attn_uses_sequence_id": True})
    docs = [random_ids(1, n, seed=n) for n in (9, 14, 6)]
    packed = torch.cat(docs, 1)
    sequence_id = torch.cat([torch.full((1, d.shape[1]), i) for i, d in enumerate(docs)], 1)
    labels = packed.clone()
    starts = torch.tensor([0, 9, 23])
    labels[0, starts] = -100
    model(packed, sequence_id=sequence_id, labels=labels).loss.backward()
    packed_grads = param_grads(model)
    model.zero_grad()
    tokens = sum(d.shape[1] - 1 for d in docs)
    for doc in docs:
        (model(doc, labels=doc).loss * (doc.shape[1] - 1) / tokens).backward()
    for name, grad in param_grads(model).items():
        torch.testing.assert_close(packed_grads[name], grad, rtol=1e-4, atol=1e-6, msg=name)
