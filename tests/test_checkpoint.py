"""Checkpoint I/O: replit-layout folders (bin, sharded bin, safetensors), old layout, hub ids, bad files."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM, AutoTokenizer, MptForCausalLM

from replitlm import ReplitLMForCausalLM, ReplitLMTokenizer, load_tokenizer
from replitlm.checkpoint import CheckpointError, find_unreadable_file
from tests.conftest import tiny_model

IDS = torch.tensor([[5, 17, 300, 42, 7, 99, 123, 4]])


def replit_config_json(model: ReplitLMForCausalLM) -> dict:
    """The config as replit publishes it: MPT names plus remote-code pointers and metadata."""
    cfg = model.config.to_dict()
    cfg["architectures"] = ["MPTForCausalLM"]
    cfg["auto_map"] = {
        "AutoConfig": "configuration_mpt.MPTConfig",
        "AutoModelForCausalLM": "modeling_mpt.MPTForCausalLM",
    }
    cfg["tokenizer_name"] = "replit/replit-code-v1-3b"
    return cfg


def write_replit_folder(model: ReplitLMForCausalLM, folder: Path, fmt: str = "bin") -> Path:
    """Write `model` the way the hub repo stores it (pytorch_model.bin), or sharded / as safetensors."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(replit_config_json(model)))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    if fmt == "bin":
        torch.save(state, folder / "pytorch_model.bin")
    elif fmt == "sharded-bin":
        keys = sorted(state)
        shards = {"pytorch_model-00001-of-00002.bin": keys[: len(keys) // 2]}
        shards["pytorch_model-00002-of-00002.bin"] = keys[len(keys) // 2 :]
        weight_map = {}
        for name, shard_keys in shards.items():
            torch.save({k: state[k] for k in shard_keys}, folder / name)
            weight_map |= dict.fromkeys(shard_keys, name)
        index = {"metadata": {"total_size": 0}, "weight_map": weight_map}
        (folder / "pytorch_model.bin.index.json").write_text(json.dumps(index))
    elif fmt == "safetensors":
        save_file(state, folder / "model.safetensors", metadata={"format": "pt"})
    return folder


def logits(model: torch.nn.Module) -> torch.Tensor:
    with torch.no_grad():
        return model(IDS).logits


@pytest.mark.parametrize("fmt", ["bin", "sharded-bin", "safetensors"])
def test_loads_replit_layout_folders(tmp_path: Path, fmt: str) -> None:
    model = tiny_model()
    folder = write_replit_folder(model, tmp_path / fmt, fmt)
    loaded = ReplitLMForCausalLM.from_pretrained(folder)
    assert torch.equal(logits(loaded), logits(model))


def test_save_load_round_trip_is_bit_exact(tmp_path: Path) -> None:
    model = tiny_model(n_heads=5)
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    assert not list(tmp_path.glob("*.bin"))
    loaded = ReplitLMForCausalLM.from_pretrained(tmp_path)
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    saved, original = loaded.config.to_dict(), model.config.to_dict()
    saved.pop("_name_or_path"), original.pop("_name_or_path")
    assert saved == original


def test_builtin_transformers_loads_our_export(tmp_path: Path) -> None:
    model = tiny_model(n_heads=6)
    model.save_pretrained(tmp_path)
    builtin = AutoModelForCausalLM.from_pretrained(tmp_path)  # no trust_remote_code
    assert isinstance(builtin, MptForCausalLM)
    torch.testing.assert_close(logits(builtin.eval()), logits(model), rtol=0, atol=1e-5)


def test_attn_impl_dtype_and_config_overrides(tmp_path: Path) -> None:
    model = tiny_model()
    write_replit_folder(model, tmp_path)
    flex = ReplitLMForCausalLM.from_pretrained(tmp_path, attn_impl="flex")
    assert flex.config.attn_config["attn_impl"] == "flex"
    torch.testing.assert_close(logits(flex), logits(model), rtol=0, atol=1e-5)
    bf16 = ReplitLMForCausalLM.from_pretrained(tmp_path, dtype=torch.bfloat16)
    assert bf16.transformer.wte.weight.dtype == torch.bfloat16
    longer = ReplitLMForCausalLM.from_pretrained(tmp_path, config_overrides={"max_seq_len": 4096})
    assert longer.config.max_seq_len == 4096
    # a nested override changes its key and keeps the section's others (alibi, its bias max, ...)
    nested = {"attn_config": {"alibi_bias_max": 4}, "init_config": {"init_std": 0.01}}
    tuned = ReplitLMForCausalLM.from_pretrained(tmp_path, config_overrides=nested)
    attn, init = tuned.config.attn_config, tuned.config.init_config
    assert attn["alibi_bias_max"] == 4 and init["init_std"] == 0.01
    assert {k: v for k, v in attn.items() if k != "alibi_bias_max"} == {
        k: v for k, v in model.config.attn_config.items() if k != "alibi_bias_max"
    }
    assert {k: v for k, v in init.items() if k != "init_std"} == {
        k: v for k, v in model.config.init_config.items() if k != "init_std"
    }
    with pytest.raises(ValueError, match=r"attn_config\.attn_impl"):
        ReplitLMForCausalLM.from_pretrained(tmp_path, attn_impl="xformers")
    triton = ReplitLMForCausalLM.from_pretrained(tmp_path, attn_impl="triton")
    assert triton.config.attn_config["attn_impl"] == "triton"


def test_an_explicit_config_and_the_loading_info(tmp_path: Path) -> None:
    """transformers' own keywords still work: `config=` (with attn_impl applied to it) and
    `output_loading_info=True`, whose info lists nothing missing for our own export."""
    model = tiny_model()
    write_replit_folder(model, tmp_path)
    config = type(model.config).from_dict(model.config.to_dict())
    config.attn_config["alibi_bias_max"] = 4
    loaded, info = ReplitLMForCausalLM.from_pretrained(
        tmp_path, config=config, attn_impl="flex", output_loading_info=True
    )
    assert (
        loaded.config.attn_config["alibi_bias_max"] == 4 and loaded.config.attn_config["attn_impl"] == "flex"
    )
    assert info["missing_keys"] == [] and info["unexpected_keys"] == [] and not info["mismatched_keys"]
    assert isinstance(ReplitLMForCausalLM.from_pretrained(tmp_path), ReplitLMForCausalLM)


# replit's tokenizer_config.json on the hub points AutoTokenizer at remote code; ours must win without it.
REPLIT_TOKENIZER_CONFIG = {
    "auto_map": {"AutoTokenizer": ["replit_lm_tokenizer.ReplitLMTokenizer", None]},
    "bos_token": None,
    "clean_up_tokenization_spaces": False,
    "eos_token": "<|endoftext|>",
    "model_max_length": 2048,
    "pad_token": "<|pad|>",
    "padding_side": "right",
    "sep_token": None,
    "sp_model_kwargs": {},
    "tokenizer_class": "ReplitLMTokenizer",
    "unk_token": "<|unk|>",
}


def test_loads_a_hub_id_through_the_hub_cache(tmp_path: Path, spiece_path: Path) -> None:
    """The real hub code path (repo id -> cache lookup), served from a local cache instead of the network."""
    model = tiny_model()
    repo = tmp_path / "models--replit--replit-code-v1-3b"
    snapshot = repo / "snapshots" / ("0" * 40)
    write_replit_folder(model, snapshot)
    shutil.copyfile(spiece_path, snapshot / "spiece.model")
    (snapshot / "tokenizer_config.json").write_text(json.dumps(REPLIT_TOKENIZER_CONFIG))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    hub = {"cache_dir": tmp_path, "local_files_only": True}
    loaded = ReplitLMForCausalLM.from_pretrained("replit/replit-code-v1-3b", **hub)
    assert torch.equal(logits(loaded), logits(model))
    for tokenizer in (
        ReplitLMTokenizer.from_pretrained("replit/replit-code-v1-3b", **hub),
        AutoTokenizer.from_pretrained("replit/replit-code-v1-3b", **hub),
        load_tokenizer("replit/replit-code-v1-3b", **hub),
    ):
        assert type(tokenizer) is ReplitLMTokenizer and tokenizer("abc")["input_ids"] == [5903]


def test_loads_the_older_replitlm_layout(tmp_path: Path) -> None:
    model = tiny_model()
    cfg = model.config
    flat = {
        "model_type": "replit_lm",
        "d_model": cfg.d_model,
        "n_heads": cfg.n_heads,
        "n_layers": cfg.n_layers,
        "mlp_ratio": 4,
        "max_seq_len": cfg.max_seq_len,
        "vocab_size": cfg.vocab_size,
        "attn_impl": "torch",
        "alibi": True,
        "alibi_bias_max": 8,
        "low_precision_layernorm": True,
        "no_bias": True,
    }
    old_names = {
        ".norm_1.": ".ln_1.",
        ".norm_2.": ".ln_2.",
        ".ffn.up_proj.": ".mlp.mlp_up.",
        ".ffn.down_proj.": ".mlp.mlp_down.",
        "transformer.norm_f.": "transformer.ln_f.",
    }
    state = {}
    for key, value in model.state_dict().items():
        for new, old in old_names.items():
            key = key.replace(new, old)
        state[key] = value
    tmp_path.joinpath("config.json").write_text(json.dumps(flat))
    torch.save(state, tmp_path / "pytorch_model.bin")
    loaded = ReplitLMForCausalLM.from_pretrained(tmp_path)
    assert torch.equal(logits(loaded), logits(model))
    loaded.save_pretrained(tmp_path / "converted")  # saved in the current (MPT) layout
    assert json.loads((tmp_path / "converted" / "config.json").read_text())["model_type"] == "mpt"
    assert AutoModelForCausalLM.from_pretrained(tmp_path / "converted") is not None


def test_missing_unexpected_and_misshaped_tensors_are_named(tmp_path: Path) -> None:
    model = tiny_model()
    state = dict(model.state_dict())
    cases = {
        "missing": (
            {k: v for k, v in state.items() if "blocks.1.ffn.up_proj" not in k},
            "missing keys.*blocks.1.ffn.up_proj.weight",
        ),
        "unexpected": (
            {**state, "transformer.blocks.0.attn.q_ln.weight": torch.ones(4)},
            "unexpected keys.*q_ln.weight",
        ),
        "shape": (
            {**state, "transformer.norm_f.weight": torch.ones(7)},
            r"wrong shapes.*transformer.norm_f.weight",
        ),
    }
    for name, (bad_state, pattern) in cases.items():
        folder = tmp_path / name
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps(replit_config_json(model)))
        save_file({k: v.contiguous() for k, v in bad_state.items()}, folder / "model.safetensors")
        with pytest.raises(CheckpointError, match=pattern):
            ReplitLMForCausalLM.from_pretrained(folder)


@pytest.mark.parametrize("fmt", ["bin", "safetensors"])
def test_truncated_files_name_the_file(tmp_path: Path, fmt: str) -> None:
    model = tiny_model()
    folder = write_replit_folder(model, tmp_path, fmt)
    weights = next(p for p in folder.iterdir() if p.name != "config.json")
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=re.escape(weights.name) + " is truncated or corrupt"):
        ReplitLMForCausalLM.from_pretrained(folder)


@pytest.mark.parametrize("fmt", ["bin", "safetensors"])
def test_the_broken_shard_is_the_one_named(tmp_path: Path, fmt: str) -> None:
    """Sharded weights: healthy shards are read in full and pass; the truncated one is named, with why."""
    state = {f"w{i}": torch.randn(64, 64) for i in range(4)}
    stem = "model" if fmt == "safetensors" else "pytorch_model"  # transformers' shard names
    shards = [tmp_path / f"{stem}-0000{i}-of-00002.{fmt}" for i in (1, 2)]
    for shard, keys in zip(shards, (["w0", "w1"], ["w2", "w3"]), strict=True):
        part = {k: state[k] for k in keys}
        save_file(part, shard) if fmt == "safetensors" else torch.save(part, shard)
    assert find_unreadable_file(tmp_path) is None
    assert find_unreadable_file(tmp_path / "nothing-here") is None
    data = shards[1].read_bytes()
    shards[1].write_bytes(data[: len(data) * 3 // 4])
    path, why = find_unreadable_file(tmp_path)
    assert path == shards[1] and why.split(":")[0] in ("SafetensorError", "RuntimeError", "OSError"), why


class _Payload:
    def __reduce__(self):
        return (print, ("code ran while unpickling",))


def test_bin_files_are_loaded_with_weights_only(tmp_path: Path, capsys) -> None:
    model = tiny_model()
    folder = write_replit_folder(model, tmp_path)
    torch.save({**model.state_dict(), "payload": _Payload()}, folder / "pytorch_model.bin")
    with pytest.raises((CheckpointError, OSError)):
        ReplitLMForCausalLM.from_pretrained(folder)
    assert "code ran" not in capsys.readouterr().out


def test_folder_without_weights_or_config_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(OSError, match=r"config\.json"):
        ReplitLMForCausalLM.from_pretrained(tmp_path)
    tiny_model().config.save_pretrained(tmp_path)
    with pytest.raises(OSError, match=r"model\.safetensors|pytorch_model\.bin"):
        ReplitLMForCausalLM.from_pretrained(tmp_path)
