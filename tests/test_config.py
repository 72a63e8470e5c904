"""ReplitLMConfig: replit config.json names, both layouts, validation that names the field, named sizes."""

from __future__ import annotations

import json
import re

import pytest
from transformers import AutoConfig, MptConfig

from replitlm import MODEL_SIZES, ReplitLMConfig, config_for_size
from replitlm.config import ConfigError

# replit-code-v1-3b's config.json as published (MPT layout).
REPLIT_3B_CONFIG = {
    "_name_or_path": "replit/replit-code-v1-3b",
    "alibi": True,  # older top-level leftovers are not part of the file; kept out below
    "architectures": ["MPTForCausalLM"],
    "attn_config": {
        "alibi": True,
        "alibi_bias_max": 8,
        "attn_impl": "torch",
        "attn_pdrop": 0,
        "attn_type": "multihead_attention",
        "attn_uses_sequence_id": False,
        "clip_qkv": None,
        "prefix_lm": False,
        "qk_ln": False,
        "softmax_scale": None,
    },
    "auto_map": {
        "AutoConfig": "configuration_mpt.MPTConfig",
        "AutoModelForCausalLM": "modeling_mpt.MPTForCausalLM",
    },
    "d_model": 2560,
    "emb_pdrop": 0,
    "embedding_fraction": 1.0,
    "eos_token_id": 1,
    "expansion_ratio": 4,
    "init_config": {
        "emb_init_std": None,
        "emb_init_uniform_lim": None,
        "fan_mode": "fan_in",
        "init_div_is_residual": True,
        "init_gain": 0,
        "init_nonlinearity": "relu",
        "init_std": 0.02,
        "name": "kaiming_normal_",
        "verbose": 0,
    },
    "init_device": "cpu",
    "learned_pos_emb": True,
    "logit_scale": None,
    "max_seq_len": 2048,
    "model_type": "mpt",
    "n_heads": 32,
    "n_layers": 32,
    "no_bias": True,
    "norm_type": "low_precision_layernorm",
    "resid_pdrop": 0,
    "tokenizer_name": "replit/replit-code-v1-3b",
    "torch_dtype": "float32",
    "transformers_version": "4.28.1",
    "use_cache": True,
    "verbose": 0,
    "vocab_size": 32768,
}
REPLIT_3B_CONFIG.pop("alibi")

LEGACY_CONFIG = {
    "model_type": "replit_lm",
    "d_model": 2560,
    "n_heads": 32,
    "n_layers": 32,
    "mlp_ratio": 4,
    "max_seq_len": 2048,
    "vocab_size": 32768,
    "attn_impl": "triton",
    "attn_pdrop": 0,
    "attn_qk_ln": False,
    "attn_clip_qkv": None,
    "softmax_scale": None,
    "prefix_lm": False,
    "attn_uses_sequence_id": False,
    "alibi": True,
    "alibi_bias_max": 8,
    "low_precision_layernorm": True,
    "param_init_fn": "kaiming_normal_",
    "init_div_is_residual": True,
    "emb_init_std": None,
    "no_bias": True,
    "resid_pdrop": 0,
    "emb_pdrop": 0,
    "use_cache": False,
}


def write(tmp_path, content: dict) -> str:
    (tmp_path / "config.json").write_text(json.dumps(content))
    return str(tmp_path)


def test_reads_replit_3b_config_json(tmp_path) -> None:
    config = ReplitLMConfig.from_pretrained(write(tmp_path, REPLIT_3B_CONFIG))
    assert (config.d_model, config.n_heads, config.n_layers, config.vocab_size) == (2560, 32, 32, 32768)
    assert config.head_dim == 80 and config.ffn_hidden_size == 10240
    assert config.attn_config["alibi"] and config.attn_config["attn_impl"] == "torch"
    assert config.init_config["init_std"] == 0.02
    assert config.softmax_scale == pytest.approx(0.1118034)
    assert config.hidden_size == 2560 and config.num_hidden_layers == 32  # HF aliases
    assert not hasattr(config, "auto_map")  # no pointer to remote code survives into a save


def test_reads_the_older_flat_replitlm_layout(tmp_path) -> None:
    config = ReplitLMConfig.from_pretrained(write(tmp_path, LEGACY_CONFIG))
    new = ReplitLMConfig.from_pretrained(write(tmp_path, REPLIT_3B_CONFIG))
    assert config.expansion_ratio == 4
    assert config.attn_config["attn_impl"] == "triton"
    assert config.norm_type == "low_precision_layernorm"
    assert config.init_config["name"] == "kaiming_normal_"
    for key in ("d_model", "n_heads", "n_layers", "vocab_size", "no_bias"):
        assert getattr(config, key) == getattr(new, key)
    assert {k: v for k, v in config.attn_config.items() if k != "attn_impl"} == {
        k: v for k, v in new.attn_config.items() if k != "attn_impl"
    }
    assert config.model_type == "mpt"


def test_saved_config_loads_into_builtin_mpt(tmp_path) -> None:
    config = config_for_size("3b")
    config.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["model_type"] == "mpt" and saved["attn_config"]["alibi"] is True
    builtin = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(builtin, MptConfig)
    assert (builtin.d_model, builtin.n_heads, builtin.n_layers) == (2560, 32, 32)
    assert ReplitLMConfig.from_pretrained(tmp_path).to_dict() == config.to_dict()


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"d_model": 100, "n_heads": 3}, "n_heads"),
        ({"attn_config": {"attn_impl": "xformers"}}, "attn_config.attn_impl"),
        ({"attn_config": {"alibi": False}, "learned_pos_emb": False}, "attn_config.alibi"),
        ({"attn_config": {"attn_pdrop": 0.1, "attn_impl": "flex"}}, "attn_config.attn_pdrop"),
        ({"attn_config": {"attn_type": "multiquery_attention"}}, "attn_config.attn_type"),
        ({"attn_config": {"prefix_lm": True}}, "attn_config.prefix_lm"),
        ({"attn_config": {"alibi_bias_max": 0}}, "attn_config.alibi_bias_max"),
        ({"attn_config": {"alibi_bais_max": 8}}, "attn_config.alibi_bais_max"),
        ({"init_config": {"nmae": "kaiming_normal_"}}, "init_config.nmae"),
        ({"init_config": {"name": "orthogonal_"}}, "init_config.name"),
        ({"norm_type": "rmsnorm"}, "norm_type"),
        ({"resid_pdrop": 1.5}, "resid_pdrop"),
        ({"logit_scale": "sqrt"}, "logit_scale"),
        ({"n_head": 4}, "n_head"),
        ({"tie_word_embeddings": False}, "tie_word_embeddings"),
    ],
)
def test_invalid_values_name_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(ConfigError, match="^" + re.escape(field) + ":"):
        ReplitLMConfig(**kwargs)


def test_typo_error_suggests_the_closest_key() -> None:
    with pytest.raises(ConfigError, match="did you mean 'alibi_bias_max'"):
        ReplitLMConfig(attn_config={"alibi_bais_max": 8})
    with pytest.raises(ConfigError, match="did you mean 'n_heads'"):
        ReplitLMConfig(n_head=4)


def test_named_sizes() -> None:
    assert set(MODEL_SIZES) == {"tiny", "125m", "350m", "1b", "3b"}
    replit = ReplitLMConfig(
        **{k: v for k, v in REPLIT_3B_CONFIG.items() if k not in ("auto_map", "tokenizer_name")}
    )
    three = config_for_size("3b")
    for key in (
        "d_model",
        "n_heads",
        "n_layers",
        "vocab_size",
        "max_seq_len",
        "expansion_ratio",
        "no_bias",
        "norm_type",
    ):
        assert getattr(three, key) == getattr(replit, key), key
    assert three.attn_config["alibi"] and three.attn_config["alibi_bias_max"] == 8
    overridden = config_for_size("tiny", max_seq_len=64, attn_config={"attn_impl": "flex"})
    assert overridden.max_seq_len == 64 and overridden.attn_config["attn_impl"] == "flex"
    assert overridden.attn_config["alibi"]  # sections merge, they are not replaced
    with pytest.raises(ConfigError, match="did you mean '3b'"):
        config_for_size("3bb")


def test_3b_parameter_count_matches_the_reference() -> None:
    import torch

    from replitlm import ReplitLMForCausalLM

    with torch.device("meta"):
        model = ReplitLMForCausalLM(config_for_size("3b"))
    assert sum(p.numel() for p in model.parameters()) == 2_600_634_880
    assert len(model.state_dict()) == 194
