"""A KV cache that writes new keys and values in place instead of concatenating.

transformers' DynamicCache concatenates on every decoding step, copying the whole cache each time: O(S)
per token, which dominates batched sampling (pass@k with many samples per prompt). `KVCache` keeps one
buffer per layer whose capacity doubles when full (capped near `max_seq_len`), and returns views of it.
It is a DynamicCache in every other respect (beam reordering, cropping and batch selection still work: an
operation that replaces the views just makes the next update start a new buffer).
"""

from __future__ import annotations

from functools import partial
from typing import Any

from torch import Tensor
from transformers.cache_utils import Cache, DynamicCache, DynamicLayer

MIN_CAPACITY = 128


class GrowingLayer(DynamicLayer):
    def __init__(self, max_len: int | None = None) -> None:
        super().__init__()
        self.max_len = max_len
        self._key_buffer: Tensor | None = None
        self._value_buffer: Tensor | None = None

    def update(
        self, key_states: Tensor, value_states: Tensor, cache_kwargs: dict[str, Any] | None = None
    ) -> tuple[Tensor, Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states)
        old = self.get_seq_length()
        new = old + key_states.shape[-2]
        if not self._views_fit(key_states, new):
            self._regrow(key_states, old, new)
        self._key_buffer[..., old:new, :] = key_states
        self._value_buffer[..., old:new, :] = value_states
        self.keys = self._key_buffer[..., :new, :]
        self.values = self._value_buffer[..., :new, :]
        return self.keys, self.values

    def _views_fit(self, key_states: Tensor, new: int) -> bool:
        """Do the current keys still live at the start of a buffer that has room for `new` positions?"""
        buf = self._key_buffer
        return (
            buf is not None
            and buf.shape[-2] >= new
            and buf.shape[:2] == key_states.shape[:2]
            and buf.dtype == key_states.dtype
            and (self.keys.numel() == 0 or self.keys.data_ptr() == buf.data_ptr())
        )

    def _regrow(self, key_states: Tensor, old: int, new: int) -> None:
        capacity = max(new, 2 * old, MIN_CAPACITY)
        if self.max_len is not None:
            capacity = max(new, min(capacity, self.max_len))
        b, h, _, d = key_states.shape
        keys = key_states.new_empty(b, h, capacity, d)
        values = key_states.new_empty(b, h, capacity, d)
        if old:
            keys[..., :old, :] = self.keys
            values[..., :old, :] = self.values
        self._key_buffer, self._value_buffer = keys, values


class KVCache(DynamicCache):
    """A DynamicCache whose layers grow in place (see module docstring)."""

    def __init__(self, max_len: int | None = None) -> None:
        # Cache.__init__ directly: DynamicCache.__init__ would fill in plain DynamicLayers.
        Cache.__init__(self, layer_class_to_replicate=GrowingLayer)
        self.layer_class_to_replicate = partial(GrowingLayer, max_len)
