"""KVCache: in-place growth with the results of transformers' DynamicCache."""

from __future__ import annotations

import torch
from transformers.cache_utils import DynamicCache

from replitlm.cache import KVCache
from tests.conftest import tiny_model


def test_updates_in_place_and_match_dynamic_cache() -> None:
    ours, reference = KVCache(max_len=1000), DynamicCache()
    pointers = set()
    for step, n in enumerate([5, 1, 1, 3, 1]):
        k, v = torch.randn(2, 4, n, 8), torch.randn(2, 4, n, 8)
        got = ours.update(k, v, layer_idx=0)
        want = reference.update(k, v, layer_idx=0)
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
        if step:
            pointers.add(got[0].data_ptr())
    assert len(pointers) == 1  # after the first chunk, no step reallocated
    assert ours.get_seq_length() == 11


def test_capacity_doubles_and_is_capped_by_max_len() -> None:
    cache = KVCache(max_len=300)
    cache.update(torch.zeros(1, 1, 200, 2), torch.zeros(1, 1, 200, 2), 0)
    layer = cache.layers[0]
    assert layer._key_buffer.shape[-2] == 200
    cache.update(torch.ones(1, 1, 1, 2), torch.ones(1, 1, 1, 2), 0)
    assert layer._key_buffer.shape[-2] == 300  # min(2 * 200, max_len)
    cache.update(torch.ones(1, 1, 150, 2), torch.ones(1, 1, 150, 2), 0)  # past max_len: grows to fit
    assert cache.get_seq_length() == 351 and torch.equal(
        layer.keys[0, 0, 199:201, 0], torch.tensor([0.0, 1.0])
    )


def test_without_max_len_a_long_first_chunk_fits() -> None:
    cache = KVCache()  # no cap: the first buffer is as long as the prompt, whatever MIN_CAPACITY is
    prompt = torch.randn(1, 2, 300, 4)
    keys, values = cache.update(prompt, -prompt, 0)
    assert torch.equal(keys, prompt) and torch.equal(values, -prompt)
    step = torch.randn(1, 2, 1, 4)
    keys, _ = cache.update(step, step, 0)
    assert cache.get_seq_length() == 301 and torch.equal(keys[:, :, -1:], step)
    assert cache.layers[0]._key_buffer.shape[-2] == 600  # then it doubles


def test_batch_selection_then_update_starts_a_new_buffer() -> None:
    cache = KVCache()
    k = torch.arange(3.0)[:, None, None, None].expand(3, 1, 4, 2).contiguous()
    cache.update(k, k, 0)
    cache.reorder_cache(torch.tensor([2, 0]))
    keys, _ = cache.update(torch.full((2, 1, 1, 2), 9.0), torch.full((2, 1, 1, 2), 9.0), 0)
    assert keys.shape == (2, 1, 5, 2)
    assert keys[:, 0, 0, 0].tolist() == [2.0, 0.0] and keys[:, 0, -1, 0].tolist() == [9.0, 9.0]


def test_a_reorder_of_the_same_batch_size_is_not_overwritten() -> None:
    """Beam search permutes the batch: the permuted keys are a new tensor, and the next step must extend
    them, not the buffer that still holds the old order."""
    cache = KVCache(max_len=64)
    k = torch.arange(2.0)[:, None, None, None].expand(2, 1, 4, 2).contiguous()
    cache.update(k, k, 0)
    cache.reorder_cache(torch.tensor([1, 0]))
    keys, values = cache.update(torch.full((2, 1, 1, 2), 9.0), torch.full((2, 1, 1, 2), 9.0), 0)
    assert keys[:, 0, :4, 0].tolist() == [[1.0] * 4, [0.0] * 4] and keys[:, 0, 4, 0].tolist() == [9.0, 9.0]
    assert torch.equal(keys, values)


def test_generate_uses_kv_cache_and_beam_search_works() -> None:
    model = tiny_model()
    ids = torch.randint(3, 512, (2, 6))
    out = model.generate(
        ids, max_new_tokens=4, do_sample=False, use_cache=True, return_dict_in_generate=True, pad_token_id=2
    )
    assert isinstance(out.past_key_values, KVCache)
    beams = model.generate(ids, max_new_tokens=4, num_beams=3, do_sample=False, pad_token_id=2)
    no_cache = model.generate(
        ids, max_new_tokens=4, num_beams=3, do_sample=False, use_cache=False, pad_token_id=2
    )
    assert torch.equal(beams, no_cache)


def test_the_cache_grows_inside_generate_and_changes_no_token() -> None:
    """More new tokens than the first buffer holds (MIN_CAPACITY): the cache regrows mid-generation, and
    greedy decoding with it equals decoding without any cache."""
    from replitlm.cache import MIN_CAPACITY

    model = tiny_model(max_seq_len=512)
    prompt = torch.randint(3, 500, (1, 9), generator=torch.Generator().manual_seed(3))
    new = MIN_CAPACITY + 8
    settings = {"max_new_tokens": new, "min_new_tokens": new, "do_sample": False, "pad_token_id": 2}
    cache = KVCache(max_len=512)
    with torch.no_grad():
        cached = model.generate(prompt, past_key_values=cache, use_cache=True, **settings)
        uncached = model.generate(prompt, use_cache=False, **settings)
    assert cached.shape == (1, 9 + new)
    assert cache.get_seq_length() == 9 + new - 1  # the last token is never fed back
    assert cache.layers[0]._key_buffer.shape[-2] > MIN_CAPACITY, "the buffer regrew during generate"
    assert torch.equal(cached, uncached)
