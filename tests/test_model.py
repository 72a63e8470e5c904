"""The model against transformers' built-in MptForCausalLM (bit-exact with replit's code in fp32)."""

from __future__ import annotations

import math

import pytest
import torch
from transformers.cache_utils import DynamicCache

from replitlm import ReplitLMForCausalLM
from replitlm.attention import alibi_slopes
from replitlm.model import LPLayerNorm
from tests.conftest import builtin_twin, tiny_config, tiny_model

TOL = 1e-5


def random_ids(batch: int, length: int, vocab: int = 512, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(3, vocab, (batch, length), generator=g)


def left_padded(ids: torch.Tensor, pads: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    ids, mask = ids.clone(), torch.ones_like(ids)
    for row, n in enumerate(pads):
        ids[row, :n], mask[row, :n] = 2, 0
    return ids, mask


@pytest.mark.parametrize("n_heads", [4, 5, 6])
def test_logits_match_builtin_mpt(n_heads: int) -> None:
    model = tiny_model(n_heads=n_heads)
    ref = builtin_twin(model)
    ids = random_ids(2, 33)
    with torch.no_grad():
        ours, theirs = model(ids).logits, ref(ids).logits
    assert ours.shape == (2, 33, 512)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=TOL)


@pytest.mark.parametrize("n_heads", [4, 5])
def test_left_padded_batch_matches_builtin_and_unpadded_rows(n_heads: int) -> None:
    model = tiny_model(n_heads=n_heads)
    ref = builtin_twin(model)
    ids, mask = left_padded(random_ids(3, 20), [5, 0, 11])
    with torch.no_grad():
        ours = model(ids, attention_mask=mask).logits
        theirs = ref(ids, attention_mask=mask).logits
        alone = model(ids[2:, 11:]).logits
    torch.testing.assert_close(ours, theirs, rtol=0, atol=TOL)  # pad rows included
    torch.testing.assert_close(ours[2:, 11:], alone, rtol=0, atol=TOL)


def test_loss_matches_builtin_and_ignores_minus_100() -> None:
    model = tiny_model()
    ref = builtin_twin(model)
    ids, mask = left_padded(random_ids(2, 16), [4, 0])
    labels = ids.masked_fill(mask == 0, -100)
    with torch.no_grad():
        ours = model(ids, attention_mask=mask, labels=labels).loss
        theirs = ref(ids, attention_mask=mask, labels=labels).loss
        logits = model(ids, attention_mask=mask).logits
    torch.testing.assert_close(ours, theirs, rtol=0, atol=TOL)
    # By hand: mean cross entropy of token t+1 given the prefix, over labelled targets only.
    logp = torch.log_softmax(logits[:, :-1], -1)
    target = labels[:, 1:]
    keep = target != -100
    by_hand = -logp.gather(-1, target.clamp(min=0)[..., None])[..., 0][keep].mean()
    torch.testing.assert_close(ours, by_hand, rtol=0, atol=TOL)


def test_incremental_decode_equals_full_forward() -> None:
    model = tiny_model(n_heads=5)
    ids, mask = left_padded(random_ids(2, 24), [3, 0])
    with torch.no_grad():
        full = model(ids, attention_mask=mask).logits
        cache = DynamicCache()
        prefill = model(
            ids[:, :10], attention_mask=mask[:, :10], past_key_values=cache, use_cache=True
        ).logits
        steps = [prefill]
        for t in range(10, 24, 3):  # chunked steps: several queries against a longer cache
            out = model(
                ids[:, t : t + 3], attention_mask=mask[:, : t + 3], past_key_values=cache, use_cache=True
            )
            steps.append(out.logits)
    torch.testing.assert_close(torch.cat(steps, 1)[mask.bool()], full[mask.bool()], rtol=0, atol=TOL)


@pytest.mark.parametrize("use_cache", [True, False])
@pytest.mark.parametrize("n_heads", [4, 6])
def test_greedy_generate_token_identical_to_builtin(use_cache: bool, n_heads: int) -> None:
    model = tiny_model(n_heads=n_heads, seed=3)
    ref = builtin_twin(model)
    ids, mask = left_padded(random_ids(2, 9, seed=4), [3, 0])
    kwargs = dict(attention_mask=mask, max_new_tokens=12, do_sample=False, use_cache=use_cache)
    kwargs |= dict(pad_token_id=2, eos_token_id=None)
    ours = model.generate(ids, **kwargs)
    theirs = ref.generate(ids, **kwargs)
    assert torch.equal(ours, theirs)
    assert ours.shape == (2, 21)


def test_sampling_generate_runs_with_and_without_cache() -> None:
    model = tiny_model()
    ids = random_ids(2, 5)
    outs = []
    for use_cache in (True, False):
        torch.manual_seed(0)
        outs.append(
            model.generate(
                ids, max_new_tokens=6, do_sample=True, top_k=4, use_cache=use_cache, pad_token_id=2
            )
        )
    assert torch.equal(outs[0], outs[1])  # same seed, same distribution: cache changes nothing


def test_generate_rejects_right_padding() -> None:
    model = tiny_model()
    ids, mask = random_ids(2, 6), torch.ones(2, 6, dtype=torch.long)
    mask[0, -2:] = 0
    with pytest.raises(ValueError, match="left padding"):
        model.generate(ids, attention_mask=mask, max_new_tokens=2, pad_token_id=2)


def test_packed_documents_equal_separate_documents() -> None:
    model = tiny_model(n_heads=5, attn_config={"attn_uses_sequence_id": True})
    docs = [random_ids(1, n, seed=n) for n in (7, 12, 5)]
    packed = torch.cat(docs, 1)
    sequence_id = torch.cat([torch.full((1, d.shape[1]), i) for i, d in enumerate(docs)], 1)
    with torch.no_grad():
        together = model(packed, sequence_id=sequence_id).logits
        start = 0
        for doc in docs:
            alone = model(doc).logits
            torch.testing.assert_close(together[:, start : start + doc.shape[1]], alone, rtol=0, atol=TOL)
            start += doc.shape[1]
        # Without sequence_id the later documents see the earlier ones: the logits must differ.
        assert not torch.allclose(model(packed).logits[:, 7:19], model(docs[1]).logits, atol=1e-3)


def test_sequence_id_ignored_unless_configured() -> None:
    model = tiny_model()
    ids = random_ids(1, 10)
    sid = torch.tensor([[0] * 5 + [1] * 5])
    with torch.no_grad():
        torch.testing.assert_close(model(ids, sequence_id=sid).logits, model(ids).logits, rtol=0, atol=0)


def test_bf16_logits_are_closer_to_fp32_than_builtin_bf16() -> None:
    torch.manual_seed(0)
    model = ReplitLMForCausalLM(tiny_config(n_heads=4, vocab_size=256, max_seq_len=1024)).eval()
    ref = builtin_twin(model)
    ids = random_ids(1, 1024, vocab=256)
    with torch.no_grad():
        exact = model(ids).logits.double()
        ours = model.to(torch.bfloat16)(ids).logits.double()
        theirs = ref.to(torch.bfloat16)(ids).logits.double()
    ours_err, theirs_err = (ours - exact).abs(), (theirs - exact).abs()
    assert ours_err.mean() < theirs_err.mean()
    assert ours_err[:, :128].max() < theirs_err[:, :128].max()  # early positions of a long sequence


def test_alibi_slopes_match_the_reference_schedule() -> None:
    torch.testing.assert_close(alibi_slopes(6), torch.tensor([1 / 4, 1 / 16, 1 / 64, 1 / 256, 1 / 2, 1 / 8]))
    torch.testing.assert_close(alibi_slopes(5), torch.tensor([1 / 4, 1 / 16, 1 / 64, 1 / 256, 1 / 2]))
    expected_12 = [2.0**-e for e in (1, 2, 3, 4, 5, 6, 7, 8, 0.5, 1.5, 2.5, 3.5)]
    torch.testing.assert_close(alibi_slopes(12), torch.tensor(expected_12))
    s32 = alibi_slopes(32)
    torch.testing.assert_close(s32, torch.tensor([2 ** (-(h + 1) / 4) for h in range(32)]))
    torch.testing.assert_close(alibi_slopes(4, alibi_bias_max=4), torch.tensor([0.5, 0.25, 0.125, 0.0625]))


def test_alibi_bias_max_and_logit_scale_change_the_function() -> None:
    base = tiny_model()
    ids = random_ids(1, 12)
    for overrides in ({"attn_config": {"alibi_bias_max": 4}}, {"logit_scale": "inv_sqrt_d_model"}):
        other = tiny_model(**overrides)
        other.load_state_dict(base.state_dict())
        with torch.no_grad():
            assert not torch.allclose(other(ids).logits, base(ids).logits, atol=1e-4)
    scaled = tiny_model(logit_scale=0.5)
    scaled.load_state_dict(base.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(scaled(ids).logits, base(ids).logits * 0.5)


def test_clip_qkv_qk_ln_softmax_scale_and_biases_are_wired() -> None:
    ids = random_ids(1, 10)
    cases = [
        ({"attn_config": {"qk_ln": True}}, ["q_ln", "k_ln"]),
        ({"no_bias": False}, ["bias"]),
    ]
    for overrides, keys in cases:
        model = tiny_model(**overrides)
        names = list(model.state_dict())
        assert all(any(k in n for n in names) for k in keys), names
        with torch.no_grad():
            assert torch.isfinite(model(ids).logits).all()
    # clip_qkv clamps the fused projection; softmax_scale replaces 1/sqrt(head_dim)
    base = tiny_model()
    for overrides in ({"attn_config": {"clip_qkv": 0.05}}, {"attn_config": {"softmax_scale": 0.5}}):
        other = tiny_model(**overrides)
        other.load_state_dict(base.state_dict())
        with torch.no_grad():
            assert not torch.allclose(other(ids).logits, base(ids).logits, atol=1e-4)
    assert math.isclose(base.config.softmax_scale, 1 / math.sqrt(32))


def test_learned_positions_without_alibi() -> None:
    model = tiny_model(attn_config={"alibi": False})
    assert "transformer.wpe.weight" in model.state_dict()
    ids, mask = left_padded(random_ids(2, 12), [4, 0])
    with torch.no_grad():
        padded = model(ids, attention_mask=mask).logits
        alone = model(ids[:1, 4:]).logits
        cache = DynamicCache()
        model(ids[:, :8], attention_mask=mask[:, :8], past_key_values=cache, use_cache=True)
        step = model(ids[:, 8:], attention_mask=mask, past_key_values=cache, use_cache=True).logits
    torch.testing.assert_close(padded[:1, 4:], alone, rtol=0, atol=TOL)
    torch.testing.assert_close(step, padded[:, 8:], rtol=0, atol=TOL)


def test_dropouts_are_active_only_in_training() -> None:
    model = tiny_model(resid_pdrop=0.3, emb_pdrop=0.3, attn_config={"attn_pdrop": 0.3})
    ids = random_ids(1, 10)
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, model(ids).logits, rtol=0, atol=0)
        model.train()
        assert not torch.allclose(model(ids).logits, model(ids).logits)


def test_sequence_longer_than_max_seq_len_is_a_clear_error() -> None:
    model = tiny_model(max_seq_len=16)
    assert model(random_ids(1, 16)).logits.shape[1] == 16  # exactly max_seq_len is fine
    with pytest.raises(ValueError, match=r"exceeds max_seq_len=16 \(ALiBi has no learned positions"):
        model(random_ids(1, 17))


def test_low_precision_layernorm_runs_in_autocast_dtype() -> None:
    norm = LPLayerNorm(8, bias=False)
    x = torch.randn(2, 8)
    assert norm(x).dtype == torch.float32
    torch.testing.assert_close(norm(x), torch.nn.functional.layer_norm(x, (8,), norm.weight, None, 1e-5))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = norm(x)
        plain = torch.nn.LayerNorm(8, bias=False)(x)
    assert y.dtype == torch.bfloat16
    assert plain.dtype == torch.float32  # what a plain LayerNorm does under autocast


@pytest.mark.parametrize("bias", [False, True])
def test_low_precision_layernorm_uses_its_weights_in_the_autocast_dtype(bias: bool) -> None:
    """Under autocast: input, weight and bias cast down, then LayerNorm in that dtype, bit for bit."""
    torch.manual_seed(0)
    norm = LPLayerNorm(8, bias=bias, eps=1e-3)
    with torch.no_grad():
        norm.weight.normal_()
        if bias:
            norm.bias.normal_()
    x = torch.randn(3, 8)
    b16 = lambda t: None if t is None else t.to(torch.bfloat16)  # noqa: E731
    expected = torch.nn.functional.layer_norm(b16(x), (8,), b16(norm.weight), b16(norm.bias), 1e-3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        torch.testing.assert_close(norm(x), expected, rtol=0, atol=0)


def test_initialisation_follows_init_config() -> None:
    config = tiny_config(n_heads=4)
    model = ReplitLMForCausalLM(config)
    d, n_layers = config.d_model, config.n_layers
    block = model.transformer.blocks[0]
    kaiming = math.sqrt(2 / d)
    for weight, expected in [
        (model.transformer.wte.weight, kaiming),
        (block.attn.Wqkv.weight, kaiming),
        (block.ffn.up_proj.weight, kaiming),
        (block.attn.out_proj.weight, kaiming / math.sqrt(2 * n_layers)),
        (block.ffn.down_proj.weight, math.sqrt(2 / (4 * d)) / math.sqrt(2 * n_layers)),
    ]:
        assert abs(weight.std().item() - expected) / expected < 0.1
    assert torch.equal(block.norm_1.weight, torch.ones(d))


def test_meta_device_build_then_initialise() -> None:
    config = tiny_config()
    with torch.device("meta"):
        model = ReplitLMForCausalLM(config)
    assert model.transformer.wte.weight.is_meta
    model.to_empty(device="cpu")
    torch.manual_seed(0)
    model.init_parameters()
    assert torch.equal(model.transformer.blocks[1].norm_2.weight, torch.ones(config.d_model))
    std = model.transformer.blocks[1].attn.Wqkv.weight.std().item()
    assert abs(std - math.sqrt(2 / config.d_model)) < 0.02
    with torch.no_grad():
        assert torch.isfinite(model(random_ids(1, 8)).logits).all()


def test_gradient_checkpointing_gives_the_same_gradients() -> None:
    ids = random_ids(2, 16)
    grads = []
    for checkpointing in (False, True):
        model = tiny_model().train()
        if checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model(ids, labels=ids).loss.backward()
        grads.append(model.transformer.blocks[0].attn.Wqkv.weight.grad.clone())
    torch.testing.assert_close(grads[0], grads[1])
