"""ReplitLMConfig: the replit-code-v1-3b `config.json` (MPT field names) as a validated transformers config.

The field names, nesting and defaults are those of the published `MPTConfig`, so a replit `config.json` loads
unchanged and a saved config loads into transformers' built-in `MptForCausalLM`. Two deliberate differences:
`attn_impl` defaults to "torch" (the published default "triton" needs a GPU), and values are checked up front,
with errors that name the offending field.
"""

from __future__ import annotations

import math
from typing import Any

from transformers import PretrainedConfig

from replitlm.suggest import did_you_mean

ATTN_IMPLS = ("torch", "flex", "flash", "triton")
NORM_TYPES = ("low_precision_layernorm", "layernorm")
INIT_FNS = ("kaiming_normal_", "kaiming_uniform_", "xavier_normal_", "xavier_uniform_", "baseline_")

ATTN_CONFIG_DEFAULTS: dict[str, Any] = {
    "attn_type": "multihead_attention",
    "attn_pdrop": 0.0,
    "attn_impl": "torch",
    "qk_ln": False,
    "clip_qkv": None,
    "softmax_scale": None,
    "prefix_lm": False,
    "attn_uses_sequence_id": False,
    "alibi": False,
    "alibi_bias_max": 8,
}

INIT_CONFIG_DEFAULTS: dict[str, Any] = {
    "name": "kaiming_normal_",
    "fan_mode": "fan_in",
    "init_nonlinearity": "relu",
    "init_div_is_residual": True,
    "emb_init_std": None,
    "emb_init_uniform_lim": None,
    "init_std": None,
    "init_gain": 0.0,
    "verbose": 0,
}

# Top-level fields of the replit/MPT config.json that this class owns.
MODEL_FIELDS = (
    "d_model",
    "n_heads",
    "n_layers",
    "expansion_ratio",
    "max_seq_len",
    "vocab_size",
    "resid_pdrop",
    "emb_pdrop",
    "learned_pos_emb",
    "attn_config",
    "init_device",
    "logit_scale",
    "no_bias",
    "verbose",
    "embedding_fraction",
    "norm_type",
    "use_cache",
    "init_config",
)

# The older "ReplitLM" layout (model_type "replit_lm") kept everything flat under other names.
LEGACY_TOP_LEVEL = {"mlp_ratio": "expansion_ratio"}
LEGACY_ATTN = {
    "attn_impl": "attn_impl",
    "attn_pdrop": "attn_pdrop",
    "attn_qk_ln": "qk_ln",
    "attn_clip_qkv": "clip_qkv",
    "softmax_scale": "softmax_scale",
    "prefix_lm": "prefix_lm",
    "attn_uses_sequence_id": "attn_uses_sequence_id",
    "alibi": "alibi",
    "alibi_bias_max": "alibi_bias_max",
}
LEGACY_INIT = {
    "param_init_fn": "name",
    "init_std": "init_std",
    "init_div_is_residual": "init_div_is_residual",
    "emb_init_std": "emb_init_std",
    "emb_init_uniform_lim": "emb_init_uniform_lim",
    "fan_mode": "fan_mode",
    "init_nonlinearity": "init_nonlinearity",
    "init_gain": "init_gain",
}


class ConfigError(ValueError):
    """A model config value is invalid; the message names the field."""


def _merge_section(section: str, given: dict[str, Any] | None, defaults: dict[str, Any]) -> dict[str, Any]:
    given = dict(given or {})
    for key in given:
        if key not in defaults:
            raise ConfigError(
                f"{section}.{key}: unknown key{did_you_mean(key, tuple(defaults))}; valid keys: {sorted(defaults)}"
            )
    return {**defaults, **given}


def convert_legacy_config(flat: dict[str, Any]) -> dict[str, Any]:
    """Rename the older flat ReplitLM config (model_type 'replit_lm') to the MPT layout."""
    out: dict[str, Any] = {}
    attn: dict[str, Any] = {}
    init: dict[str, Any] = {}
    for key, value in flat.items():
        if key in LEGACY_ATTN:
            attn[LEGACY_ATTN[key]] = value
        elif key in LEGACY_INIT:
            init[LEGACY_INIT[key]] = value
        elif key == "low_precision_layernorm":
            out["norm_type"] = "low_precision_layernorm" if value else "layernorm"
        elif key == "model_type":
            continue
        else:
            out[LEGACY_TOP_LEVEL.get(key, key)] = value
    out["attn_config"] = attn
    out["init_config"] = init
    return out


class ReplitLMConfig(PretrainedConfig):
    """replit-code-v1-3b's MPT-style config. Keyword arguments use the replit `config.json` names.

    Example: ``ReplitLMConfig(d_model=2560, n_heads=32, n_layers=32, vocab_size=32768,
    attn_config={"alibi": True, "attn_impl": "torch"})``. See `replitlm.config.MODEL_SIZES` for presets.
    """

    model_type = "mpt"  # so saved configs load into transformers' built-in MptForCausalLM
    attribute_map = {
        "hidden_size": "d_model",
        "num_attention_heads": "n_heads",
        "num_hidden_layers": "n_layers",
        "max_position_embeddings": "max_seq_len",
    }

    def __init__(
        self,
        d_model: int = 2048,
        n_heads: int = 16,
        n_layers: int = 24,
        expansion_ratio: float = 4,
        max_seq_len: int = 2048,
        vocab_size: int = 50368,
        resid_pdrop: float = 0.0,
        emb_pdrop: float = 0.0,
        learned_pos_emb: bool = True,
        attn_config: dict[str, Any] | None = None,
        init_device: str = "cpu",
        logit_scale: float | str | None = None,
        no_bias: bool = False,
        verbose: int = 0,
        embedding_fraction: float = 1.0,
        norm_type: str = "low_precision_layernorm",
        use_cache: bool = False,
        init_config: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if kwargs.get("model_type") == "replit_lm" or "mlp_ratio" in kwargs:
            raise ConfigError(
                "this is the older flat ReplitLM config layout; load it with ReplitLMConfig.from_dict() "
                "or from_pretrained(), which rename its keys"
            )
        for key in kwargs:
            typo = did_you_mean(key, MODEL_FIELDS)
            if typo and key not in _PRETRAINED_CONFIG_KEYS:
                raise ConfigError(f"{key}: unknown config field{typo}")
        self.d_model = d_model
        self.n_heads = n_heads
        self.n_layers = n_layers
        self.expansion_ratio = expansion_ratio
        self.max_seq_len = max_seq_len
        self.vocab_size = vocab_size
        self.resid_pdrop = resid_pdrop
        self.emb_pdrop = emb_pdrop
        self.learned_pos_emb = learned_pos_emb
        self.attn_config = _merge_section("attn_config", attn_config, ATTN_CONFIG_DEFAULTS)
        self.init_device = init_device
        self.logit_scale = logit_scale
        self.no_bias = no_bias
        self.verbose = verbose
        self.embedding_fraction = embedding_fraction
        self.norm_type = norm_type
        self.use_cache = use_cache
        self.init_config = _merge_section("init_config", init_config, INIT_CONFIG_DEFAULTS)
        kwargs.setdefault("tie_word_embeddings", True)
        kwargs.setdefault("eos_token_id", 1)
        kwargs.setdefault("pad_token_id", 2)
        super().__init__(**kwargs)
        self.validate()

    # -- derived values -------------------------------------------------------------------------------
    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def ffn_hidden_size(self) -> int:
        return int(self.expansion_ratio * self.d_model)

    @property
    def softmax_scale(self) -> float:
        scale = self.attn_config["softmax_scale"]
        return float(scale) if scale is not None else 1.0 / math.sqrt(self.head_dim)

    @property
    def resolved_logit_scale(self) -> float | None:
        if self.logit_scale == "inv_sqrt_d_model":
            return 1.0 / math.sqrt(self.d_model)
        return None if self.logit_scale is None else float(self.logit_scale)

    # -- validation -----------------------------------------------------------------------------------
    def validate(self) -> None:
        """Raise ConfigError naming the first invalid field."""
        _check(isinstance(self.d_model, int) and self.d_model > 0, "d_model", "must be a positive integer")
        _check(isinstance(self.n_heads, int) and self.n_heads > 0, "n_heads", "must be a positive integer")
        _check(
            self.d_model % self.n_heads == 0,
            "n_heads",
            f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}",
        )
        _check(isinstance(self.n_layers, int) and self.n_layers > 0, "n_layers", "must be a positive integer")
        _check(self.vocab_size > 0, "vocab_size", "must be positive")
        _check(self.max_seq_len > 0, "max_seq_len", "must be positive")
        _check(self.expansion_ratio > 0, "expansion_ratio", "must be positive")
        for name in ("resid_pdrop", "emb_pdrop"):
            _check(0.0 <= getattr(self, name) < 1.0, name, "must be in [0, 1)")
        _check(0.0 < self.embedding_fraction <= 1.0, "embedding_fraction", "must be in (0, 1]")
        _check(self.norm_type in NORM_TYPES, "norm_type", f"'{self.norm_type}' is not one of {NORM_TYPES}")
        _check(
            self.logit_scale is None
            or self.logit_scale == "inv_sqrt_d_model"
            or isinstance(self.logit_scale, int | float),
            "logit_scale",
            "must be null, a number or 'inv_sqrt_d_model'",
        )
        _check(self.tie_word_embeddings, "tie_word_embeddings", "must be true: the output head is wte")
        self._validate_attn_config()
        self._validate_init_config()

    def _validate_attn_config(self) -> None:
        a = self.attn_config
        impl = a["attn_impl"]
        _check(impl in ATTN_IMPLS, "attn_config.attn_impl", f"'{impl}' is not one of {ATTN_IMPLS}")
        _check(
            a["attn_type"] == "multihead_attention",
            "attn_config.attn_type",
            f"'{a['attn_type']}' is not supported (only multihead_attention, as replit-code-v1-3b uses)",
        )
        _check(not a["prefix_lm"], "attn_config.prefix_lm", "prefix-LM attention is not supported")
        _check(0.0 <= a["attn_pdrop"] < 1.0, "attn_config.attn_pdrop", "must be in [0, 1)")
        _check(
            a["attn_pdrop"] == 0 or impl in ("torch", "flash"),
            "attn_config.attn_pdrop",
            f"attention dropout needs attn_impl 'torch' or 'flash'; '{impl}' has none",
        )
        _check(a["alibi_bias_max"] > 0, "attn_config.alibi_bias_max", "must be positive")
        _check(
            a["alibi"] or self.learned_pos_emb,
            "attn_config.alibi",
            "with alibi false the model needs learned_pos_emb true (it would have no positions)",
        )
        _check(a["clip_qkv"] is None or a["clip_qkv"] > 0, "attn_config.clip_qkv", "must be null or positive")
        _check(
            a["softmax_scale"] is None or a["softmax_scale"] > 0,
            "attn_config.softmax_scale",
            "must be null or positive",
        )

    def _validate_init_config(self) -> None:
        i = self.init_config
        _check(i["name"] in INIT_FNS, "init_config.name", f"'{i['name']}' is not one of {INIT_FNS}")
        _check(i["fan_mode"] in ("fan_in", "fan_out"), "init_config.fan_mode", "must be fan_in or fan_out")
        _check(
            i["name"] != "baseline_" or i["init_std"] is not None,
            "init_config.init_std",
            "baseline_ init needs init_std",
        )

    # -- loading --------------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, config_dict: dict[str, Any], **kwargs: Any) -> ReplitLMConfig:
        """Accept both the MPT layout and the older flat ReplitLM layout (model_type 'replit_lm')."""
        if config_dict.get("model_type") == "replit_lm" or "mlp_ratio" in config_dict:
            config_dict = convert_legacy_config(config_dict)
        config_dict = {k: v for k, v in config_dict.items() if k not in _IGNORED_ON_LOAD}
        return super().from_dict(config_dict, **kwargs)

    # -- saving ---------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """transformers' dict, with `architectures` naming transformers' built-in MPT classes.

        `save_pretrained` records the class that saved (ReplitLMForCausalLM); vLLM and TGI choose their model
        implementation by that name and know the built-in MptForCausalLM, which loads our checkpoints as they are.
        """
        out = super().to_dict()
        if out.get("architectures"):
            out["architectures"] = [EXPORTED_ARCHITECTURES.get(a, a) for a in out["architectures"]]
        return out


def _check(ok: bool, field: str, problem: str) -> None:
    if not ok:
        raise ConfigError(f"{field}: {problem}")


# Keys a replit config.json carries that mean nothing to this class (remote-code pointers, metadata).
_IGNORED_ON_LOAD = {"auto_map", "tokenizer_name"}
# Our classes as config.json names them: transformers' built-in equivalents (same weights, same logits).
EXPORTED_ARCHITECTURES = {"ReplitLMForCausalLM": "MptForCausalLM", "ReplitLMModel": "MptModel"}
# PretrainedConfig's own keyword arguments never count as typos of a model field.
_PRETRAINED_CONFIG_KEYS = set(PretrainedConfig().to_dict()) | {
    "name_or_path",
    "torch_dtype",
    "num_labels",
    "attn_implementation",
    "_attn_implementation",
    "_commit_hash",
}


# -- named sizes ----------------------------------------------------------------------------------------
_REPLIT_COMMON: dict[str, Any] = {
    "vocab_size": 32768,
    "max_seq_len": 2048,
    "expansion_ratio": 4,
    "no_bias": True,
    "learned_pos_emb": True,
    "norm_type": "low_precision_layernorm",
    "use_cache": True,  # as replit's config.json
    "attn_config": {"alibi": True, "alibi_bias_max": 8, "attn_impl": "torch"},
    "init_config": {"name": "kaiming_normal_", "fan_mode": "fan_in", "init_nonlinearity": "relu"},
}

MODEL_SIZES: dict[str, dict[str, Any]] = {
    # A toy for tests and CPU smoke runs; 5 heads keeps the non-power-of-two ALiBi slopes exercised.
    "tiny": {"d_model": 160, "n_heads": 5, "n_layers": 2, "max_seq_len": 512},
    "125m": {"d_model": 768, "n_heads": 12, "n_layers": 12},
    "350m": {"d_model": 1024, "n_heads": 16, "n_layers": 24},
    "1b": {"d_model": 2048, "n_heads": 16, "n_layers": 24},
    "3b": {"d_model": 2560, "n_heads": 32, "n_layers": 32},  # = replit-code-v1-3b
}


def config_for_size(size: str, **overrides: Any) -> ReplitLMConfig:
    """A replit-style config of a named size; `overrides` replace fields (attn_config/init_config merge)."""
    if size not in MODEL_SIZES:
        raise ConfigError(
            f"model size '{size}' is not one of {sorted(MODEL_SIZES)}{did_you_mean(size, tuple(MODEL_SIZES))}"
        )
    fields = {**_REPLIT_COMMON, **MODEL_SIZES[size]}
    for section in ("attn_config", "init_config"):
        fields[section] = {**fields[section], **overrides.pop(section, {})}
    return ReplitLMConfig(**{**fields, **overrides})
