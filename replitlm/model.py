"""The ReplitLM decoder (replit-code-v1-3b): an MPT-style pre-LN transformer with ALiBi and a tied head.

    x = wte[ids]                                   (+ wpe[pos] only without ALiBi)
    for each block:  x = x + out_proj(Attn(LN_1(x)))
                     x = x + down_proj(GELU(up_proj(LN_2(x))))
    logits = LN_f(x) @ wte.T   (* logit_scale)

Module names equal the replit checkpoint keys (`transformer.blocks.{i}.attn.Wqkv.weight`, ...), so a
replit-layout state dict loads with no renaming. Parameter initialisation lives in `init_weights_`, outside
the constructors, so a model can be built on the `meta` device and initialised after it is sharded.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import GenerationMixin, PreTrainedModel
from transformers.cache_utils import Cache, DynamicCache
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutputWithPast, CausalLMOutputWithPast

from replitlm.attention import Attend, AttentionMask, alibi_slopes, get_backend, select_backend
from replitlm.cache import KVCache
from replitlm.checkpoint import strict_from_pretrained
from replitlm.config import ReplitLMConfig


class LPLayerNorm(nn.LayerNorm):
    """LayerNorm computed in the autocast dtype under autocast (replit's low-precision LayerNorm).

    A plain LayerNorm runs in fp32 under autocast; this one casts input and weights down first, which saves
    memory bandwidth on GPUs. Outside autocast it is exactly nn.LayerNorm.
    """

    def forward(self, x: Tensor) -> Tensor:
        device = x.device.type
        if not torch.is_autocast_enabled(device):
            return super().forward(x)
        dtype = torch.get_autocast_dtype(device)
        weight = self.weight.to(dtype) if self.weight is not None else None
        bias = self.bias.to(dtype) if self.bias is not None else None
        with torch.autocast(device_type=device, enabled=False):
            return F.layer_norm(x.to(dtype), self.normalized_shape, weight, bias, self.eps)


def build_norm(config: ReplitLMConfig, width: int) -> nn.LayerNorm:
    norm_cls = LPLayerNorm if config.norm_type == "low_precision_layernorm" else nn.LayerNorm
    return norm_cls(width, eps=1e-5, bias=not config.no_bias)


class Attention(nn.Module):
    """Multi-head self-attention with a fused Wqkv projection; the score function is the backend's."""

    def __init__(self, config: ReplitLMConfig, layer_idx: int) -> None:
        super().__init__()
        d, bias = config.d_model, not config.no_bias
        self.layer_idx = layer_idx
        self.n_heads, self.head_dim = config.n_heads, config.head_dim
        self.clip_qkv = config.attn_config["clip_qkv"]
        self.attn_pdrop = config.attn_config["attn_pdrop"]
        self.Wqkv = nn.Linear(d, 3 * d, bias=bias)
        self.Wqkv._fused_split = d  # q, k and v are initialised as three separate matrices
        if config.attn_config["qk_ln"]:
            self.q_ln = build_norm(config, d)
            self.k_ln = build_norm(config, d)
        self.out_proj = nn.Linear(d, d, bias=bias)
        self.out_proj._is_residual = True

    def forward(self, x: Tensor, attend: Attend, cache: Cache | None) -> Tensor:
        b, s, d = x.shape
        qkv = self.Wqkv(x)
        if self.clip_qkv:
            qkv = qkv.clamp(-self.clip_qkv, self.clip_qkv)
        q, k, v = qkv.chunk(3, dim=-1)
        if hasattr(self, "q_ln"):
            q, k = self.q_ln(q).to(v.dtype), self.k_ln(k).to(v.dtype)
        q, k, v = (t.view(b, s, self.n_heads, self.head_dim).transpose(1, 2) for t in (q, k, v))
        if cache is not None:
            k, v = cache.update(k, v, self.layer_idx)
        y = attend(q, k, v, self.attn_pdrop if self.training else 0.0)
        return self.out_proj(y.transpose(1, 2).reshape(b, s, d))


class MLP(nn.Module):
    def __init__(self, config: ReplitLMConfig) -> None:
        super().__init__()
        bias = not config.no_bias
        self.up_proj = nn.Linear(config.d_model, config.ffn_hidden_size, bias=bias)
        self.down_proj = nn.Linear(config.ffn_hidden_size, config.d_model, bias=bias)
        self.down_proj._is_residual = True

    def forward(self, x: Tensor) -> Tensor:
        return self.down_proj(F.gelu(self.up_proj(x)))  # exact (erf) GELU, as replit


class Block(GradientCheckpointingLayer):
    def __init__(self, config: ReplitLMConfig, layer_idx: int) -> None:
        super().__init__()
        self.norm_1 = build_norm(config, config.d_model)
        self.attn = Attention(config, layer_idx)
        self.norm_2 = build_norm(config, config.d_model)
        self.ffn = MLP(config)
        self.resid_attn_dropout = nn.Dropout(config.resid_pdrop)
        self.resid_ffn_dropout = nn.Dropout(config.resid_pdrop)

    def forward(self, x: Tensor, attend: Attend, cache: Cache | None = None) -> Tensor:
        x = x + self.resid_attn_dropout(self.attn(self.norm_1(x), attend, cache))
        return x + self.resid_ffn_dropout(self.ffn(self.norm_2(x)))


# -- initialisation (kept out of the constructors) ---------------------------------------------------------
def _residual_divisor(config: ReplitLMConfig) -> float:
    div = config.init_config["init_div_is_residual"]
    if div is True:
        return math.sqrt(2 * config.n_layers)
    if div is False or div is None:
        return 1.0
    return float(div)


def _init_matrix_(weight: Tensor, config: ReplitLMConfig) -> None:
    init = config.init_config
    if init["name"] == "baseline_":
        nn.init.normal_(weight, 0.0, init["init_std"])
        return
    fn = nn.init.kaiming_normal_ if init["name"] == "kaiming_normal_" else nn.init.kaiming_uniform_
    fn(weight, a=init["init_gain"], mode=init["fan_mode"], nonlinearity=init["init_nonlinearity"])


@torch.no_grad()
def init_weights_(module: nn.Module, config: ReplitLMConfig) -> None:
    """Initialise one module's own parameters as replit's `init_config` prescribes.

    Linear: kaiming (fan_in, relu) per fused q/k/v slice, residual projections divided by sqrt(2*n_layers);
    embeddings: emb_init_std / emb_init_uniform_lim if set, else the same kaiming rule; norms: weight 1, bias 0.
    """
    init = config.init_config
    if isinstance(module, nn.Linear):
        split = getattr(module, "_fused_split", None)
        for part in module.weight.split(split, dim=0) if split else [module.weight]:
            _init_matrix_(part, config)
        if getattr(module, "_is_residual", False):
            module.weight.div_(_residual_divisor(config))
        if module.bias is not None:
            module.bias.zero_()
    elif isinstance(module, nn.Embedding):
        if init["emb_init_std"] is not None:
            nn.init.normal_(module.weight, 0.0, init["emb_init_std"])
        elif init["emb_init_uniform_lim"] is not None:
            lim = init["emb_init_uniform_lim"]
            low, high = (-lim, lim) if isinstance(lim, int | float) else lim
            nn.init.uniform_(module.weight, low, high)
        else:
            _init_matrix_(module.weight, config)
    elif isinstance(module, nn.LayerNorm):
        if module.weight is not None:
            module.weight.fill_(1.0)
        if module.bias is not None:
            module.bias.zero_()


# -- the model -----------------------------------------------------------------------------------------------
class ReplitLMPreTrainedModel(PreTrainedModel):
    config_class = ReplitLMConfig
    base_model_prefix = "transformer"
    supports_gradient_checkpointing = True
    _no_split_modules = ["Block"]
    _supports_cache_class = True
    _keys_to_ignore_on_load_unexpected = [r"^lm_head\.weight$"]  # a tied copy some exporters write

    def _init_weights(self, module: nn.Module) -> None:
        init_weights_(module, self.config)

    def init_parameters(self) -> None:
        """(Re)initialise every parameter from `config.init_config`, e.g. after `to_empty()` from meta."""
        for module in self.modules():
            init_weights_(module, self.config)


class ReplitLMModel(ReplitLMPreTrainedModel):
    def __init__(self, config: ReplitLMConfig) -> None:
        super().__init__(config)
        self.alibi = config.attn_config["alibi"]
        self.wte = nn.Embedding(config.vocab_size, config.d_model)
        if not self.alibi:
            self.wpe = nn.Embedding(config.max_seq_len, config.d_model)
        self.emb_drop = nn.Dropout(config.emb_pdrop)
        self.blocks = nn.ModuleList(Block(config, i) for i in range(config.n_layers))
        self.norm_f = build_norm(config, config.d_model)
        self.attn_backend = get_backend(config.attn_config["attn_impl"])
        self.gradient_checkpointing = False
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.wte

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.wte = value

    def forward(
        self,
        input_ids: Tensor | None = None,
        attention_mask: Tensor | None = None,
        sequence_id: Tensor | None = None,
        past_key_values: Cache | None = None,
        use_cache: bool | None = None,
        inputs_embeds: Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs: Any,
    ) -> BaseModelOutputWithPast:
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids and inputs_embeds")
        if use_cache is None:  # a training forward never wants a cache it would have to fill
            use_cache = self.config.use_cache and not self.training
        if use_cache and past_key_values is None:
            past_key_values = KVCache(max_len=self.config.max_seq_len)
        x = self.wte(input_ids) if inputs_embeds is None else inputs_embeds
        b, s = x.shape[:2]
        past_len = past_key_values.get_seq_length() if past_key_values is not None else 0
        mask = self._attention_mask(b, s, past_len, attention_mask, sequence_id)

        if not self.alibi:
            x = x + self.wpe(self._learned_positions(s, past_len, mask.key_padding_mask))
        if self.config.embedding_fraction < 1:  # GLM-130B: scale the embedding's gradient only
            f = self.config.embedding_fraction
            x = x * f + x.detach() * (1 - f)
        x = self.emb_drop(x)

        attend = select_backend(self.attn_backend, mask, x).build(mask, self.config.softmax_scale)
        hidden_states = [x] if output_hidden_states else None
        for block in self.blocks:
            x = block(x, attend, past_key_values)
            if hidden_states is not None:
                hidden_states.append(x)
        x = self.norm_f(x)
        if hidden_states is not None:
            hidden_states[-1] = x
        return BaseModelOutputWithPast(
            last_hidden_state=x,
            past_key_values=past_key_values if use_cache else None,
            hidden_states=tuple(hidden_states) if hidden_states is not None else None,
        )

    def _attention_mask(
        self, b: int, s: int, past_len: int, attention_mask: Tensor | None, sequence_id: Tensor | None
    ) -> AttentionMask:
        k_len = past_len + s
        if k_len > self.config.max_seq_len:
            hint = " (ALiBi has no learned positions: raising max_seq_len is allowed)" if self.alibi else ""
            raise ValueError(f"sequence length {k_len} exceeds max_seq_len={self.config.max_seq_len}{hint}")
        key_padding_mask = None
        if attention_mask is not None:
            if attention_mask.shape != (b, k_len):
                raise ValueError(
                    f"attention_mask has shape {tuple(attention_mask.shape)}, expected {(b, k_len)} "
                    "(batch, past + current tokens)"
                )
            key_padding_mask = attention_mask.bool()
            if bool(key_padding_mask.all()):
                key_padding_mask = None  # no padding: let backends take their fastest path
        if not self.config.attn_config["attn_uses_sequence_id"]:
            sequence_id = None
        elif sequence_id is not None:
            if past_len:
                raise ValueError("sequence_id (packed documents) cannot be combined with a KV cache")
            if sequence_id.shape != (b, s):
                raise ValueError(f"sequence_id has shape {tuple(sequence_id.shape)}, expected {(b, s)}")
        device = self.wte.weight.device
        slopes = None
        if self.alibi:
            slopes = alibi_slopes(self.config.n_heads, self.config.attn_config["alibi_bias_max"], device)
        return AttentionMask(b, s, k_len, slopes, key_padding_mask, sequence_id, device)

    def _learned_positions(self, s: int, past_len: int, key_padding_mask: Tensor | None) -> Tensor:
        pos = torch.arange(past_len, past_len + s, device=self.wte.weight.device)[None]
        if key_padding_mask is not None:  # left padding: count positions from each row's first real token
            pads_before = torch.cumsum(~key_padding_mask, dim=1)[:, past_len:]
            pos = (pos - pads_before).clamp(min=0)
        return pos


class ReplitLMForCausalLM(ReplitLMPreTrainedModel, GenerationMixin):
    """replit-code-v1-3b as a causal LM. The output head is the token embedding (tied)."""

    def __init__(self, config: ReplitLMConfig) -> None:
        super().__init__(config)
        self.transformer = ReplitLMModel(config)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.transformer.wte

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.transformer.wte = value

    def get_output_embeddings(self) -> None:
        return None  # logits use wte.weight directly: there is no separate head to tie or resize

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: Any, *args: Any, **kwargs: Any) -> Any:
        """Load a replit-layout folder or hub id strictly (every tensor must fit; errors name it).

        Extra keyword arguments: `attn_impl` ("torch", "flex", "flash", "triton") and `config_overrides`
        (a dict of config fields, e.g. {"max_seq_len": 4096}); the rest go to transformers' from_pretrained
        (`dtype`, `device_map`, `quantization_config`, `revision`, ...).
        """
        return strict_from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs)

    def forward(
        self,
        input_ids: Tensor | None = None,
        attention_mask: Tensor | None = None,
        sequence_id: Tensor | None = None,
        past_key_values: Cache | None = None,
        labels: Tensor | None = None,
        use_cache: bool | None = None,
        inputs_embeds: Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        logits_to_keep: int = 0,
        **kwargs: Any,
    ) -> CausalLMOutputWithPast:
        out = self.transformer(
            input_ids=input_ids,
            attention_mask=attention_mask,
            sequence_id=sequence_id,
            past_key_values=past_key_values,
            use_cache=use_cache,
            inputs_embeds=inputs_embeds,
            output_hidden_states=output_hidden_states,
        )
        h = out.last_hidden_state
        if logits_to_keep and labels is None:
            h = h[:, -logits_to_keep:]
        logits = F.linear(h, self.transformer.wte.weight)
        if (scale := self.config.resolved_logit_scale) is not None:
            logits = logits * scale
        loss = causal_lm_loss(logits, labels) if labels is not None else None
        result = CausalLMOutputWithPast(
            loss=loss, logits=logits, past_key_values=out.past_key_values, hidden_states=out.hidden_states
        )
        return result.to_tuple() if return_dict is False else result

    def _prepare_cache_for_generation(
        self, generation_config: Any, model_kwargs: dict, *args: Any, **kwargs: Any
    ) -> None:
        """Use the in-place KVCache where generate() would create a plain DynamicCache."""
        user_cache = model_kwargs.get("past_key_values")
        super()._prepare_cache_for_generation(generation_config, model_kwargs, *args, **kwargs)
        cache = model_kwargs.get("past_key_values")
        if user_cache is None and type(cache) is DynamicCache:
            model_kwargs["past_key_values"] = KVCache(max_len=self.config.max_seq_len)

    def prepare_inputs_for_generation(self, input_ids: Tensor, **kwargs: Any) -> dict[str, Any]:
        mask = kwargs.get("attention_mask")
        past = kwargs.get("past_key_values")
        first_step = past is None or past.get_seq_length() == 0
        if first_step and mask is not None and not bool(mask[:, -1].all()):
            raise ValueError(
                "generation needs left padding (the last prompt token must be real); "
                "set tokenizer.padding_side = 'left'"
            )
        kwargs.pop("sequence_id", None)  # packed documents are for training, not generation
        return super().prepare_inputs_for_generation(input_ids, **kwargs)


def causal_lm_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Mean next-token cross entropy in fp32; label -100 is ignored (replit's loss).

    The labels are shifted rather than the logits (slicing [B, S, V] logits would copy them).
    """
    targets = F.pad(labels[:, 1:], (0, 1), value=-100)
    return CrossEntropy.apply(logits.flatten(0, 1), targets.flatten())


class CrossEntropy(torch.autograd.Function):
    """F.cross_entropy(logits, targets, ignore_index=-100) with fewer passes over the [N, V] logits.

    The vocabulary-sized logits dominate the loss's memory traffic. PyTorch's version writes a full
    log-softmax in forward, then in backward fills a zero gradient, scatters into it and runs the
    log-softmax backward. Here forward keeps only the per-row log-sum-exp, and backward writes the
    gradient softmax(x) * scale - onehot * scale in one pass per row block, with the row scale folded into
    the exponent. Row blocks keep the temporaries small and cache-resident.
    """

    ROWS = 256

    @staticmethod
    def forward(ctx: Any, logits: Tensor, targets: Tensor) -> Tensor:
        valid = targets != -100
        safe_targets = targets.clamp(min=0)
        lse = torch.cat([torch.logsumexp(_wide(block), dim=-1) for block in logits.split(CrossEntropy.ROWS)])
        target_logit = _wide(logits.gather(1, safe_targets[:, None])[:, 0])
        count = valid.sum().clamp(min=1)
        loss = torch.where(valid, lse - target_logit, 0.0).sum() / count
        ctx.save_for_backward(logits, lse, safe_targets, valid, count)
        return loss

    @staticmethod
    def backward(ctx: Any, grad_loss: Tensor) -> tuple[Tensor, None]:
        logits, lse, targets, valid, count = ctx.saved_tensors
        scale = torch.where(valid, grad_loss / count, 0.0)  # d loss / d logit-row, per row
        # softmax(x) * scale = exp(x - (lse - log(scale))); rows with scale 0 give exp(-inf) = 0
        shift = (lse - scale.log())[:, None]
        grad = torch.empty_like(logits)
        for start in range(0, logits.shape[0], CrossEntropy.ROWS):
            rows = slice(start, start + CrossEntropy.ROWS)
            grad[rows] = (_wide(logits[rows]) - shift[rows]).exp_()
        grad.scatter_add_(1, targets[:, None], -scale[:, None].to(grad.dtype))
        return grad, None


def _wide(x: Tensor) -> Tensor:
    """x in at least fp32 (bf16/fp16 logits are reduced in fp32)."""
    return x if x.dtype in (torch.float32, torch.float64) else x.float()
