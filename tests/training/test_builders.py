"""The builders one by one: meta init for FSDP, schedulers, optimizers, the collator's checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from composer.optim import (
    ConstantWithWarmupScheduler,
    CosineAnnealingWithWarmupScheduler,
    DecoupledAdamW,
    LinearWithWarmupScheduler,
)

from replitlm import ReplitLMForCausalLM
from replitlm.training.builders import _init_one, build_model_config, build_optimizer, build_scheduler
from replitlm.training.config import load_train_config
from replitlm.training.data import DataError, TokenCollator
from replitlm.training.lion import DecoupledLionW
from tests.conftest import REPO, SPIECE
from tests.training.conftest import TINY


def test_per_module_init_after_meta_equals_the_normal_init() -> None:
    """What FSDP does with init_device=meta: materialise one module at a time, then param_init_fn on it."""
    config = build_model_config(load_train_config(TINY))
    torch.manual_seed(3)
    reference = ReplitLMForCausalLM(config)
    reference.init_parameters()
    with torch.device("meta"):
        model = ReplitLMForCausalLM(config)
    torch.manual_seed(3)
    ReplitLMForCausalLM(config)  # the same RNG draws as the reference's constructor
    for module in model.modules():
        module.to_empty(device="cpu", recurse=False)
        _init_one(module, config)
    assert all(
        torch.equal(a, b)
        for a, b in zip(model.state_dict().values(), reference.state_dict().values(), strict=True)
    )


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("cosine_with_warmup", CosineAnnealingWithWarmupScheduler),
        ("linear_decay_with_warmup", LinearWithWarmupScheduler),
        ("constant_with_warmup", ConstantWithWarmupScheduler),
    ],
)
def test_schedulers(name: str, cls: type) -> None:
    cfg = load_train_config(TINY, [f"scheduler.name={name}", "scheduler.t_warmup=7ba"])
    scheduler = build_scheduler(cfg)
    assert isinstance(scheduler, cls) and str(scheduler.t_warmup) == "7ba"


def test_optimizers_take_only_trainable_parameters() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2))
    model[0].requires_grad_(False)
    lion = build_optimizer(load_train_config(TINY), model)
    adamw = build_optimizer(
        load_train_config(TINY, ["optimizer.name=decoupled_adamw", "optimizer.eps=1e-6"]), model
    )
    assert isinstance(lion, DecoupledLionW) and isinstance(adamw, DecoupledAdamW)
    for opt in (lion, adamw):
        assert [p for g in opt.param_groups for p in g["params"]] == list(model[1].parameters())
    assert adamw.defaults["eps"] == 1e-6


def test_collator_pads_short_samples_and_refuses_foreign_ids() -> None:
    collate = TokenCollator(max_seq_len=6, vocab_size=100, pad_id=2, use_sequence_id=True)
    batch = collate(
        [
            {"tokens": np.arange(10, 20, dtype=np.uint32), "sequence_id": np.zeros(10, dtype=np.uint16)},
            {
                "tokens": np.array([5, 6, 7], dtype=np.uint32),
                "sequence_id": np.array([0, 0, 1], dtype=np.uint16),
            },
        ]
    )
    assert batch["input_ids"].tolist() == [[10, 11, 12, 13, 14, 15], [5, 6, 7, 2, 2, 2]]
    assert batch["labels"][1].tolist() == [5, 6, 7, -100, -100, -100]
    assert batch["attention_mask"][1].tolist() == [1, 1, 1, 0, 0, 0]
    assert batch["sequence_id"][1].tolist() == [0, 0, 1, 2, 2, 2]
    with pytest.raises(DataError, match="token id 150 is outside the model's vocabulary"):
        collate([{"tokens": np.array([150], dtype=np.uint32), "sequence_id": np.zeros(1, dtype=np.uint16)}])
    with pytest.raises(DataError, match="no `sequence_id` column"):
        collate([{"tokens": np.array([1], dtype=np.uint32)}])


def test_lora_keeps_every_trained_tensor_in_fp32_over_a_bf16_base(base) -> None:
    """peft upcasts only the LoRA matrices; a bf16 `modules_to_save` copy would round 2e-4 updates away."""
    from replitlm.training.builders import build_model, build_model_config
    from replitlm.training.config import load_train_config
    from tests.conftest import REPO

    cfg = load_train_config(
        REPO / "yamls" / "finetune" / "lora-instruct.yaml",
        [f"model.pretrained_model_name_or_path={base}", "lora.modules_to_save=[wte]", "max_seq_len=128"],
    )
    assert cfg.model.pretrained_dtype == "bfloat16"
    model = build_model(cfg, build_model_config(cfg))
    trained = {n: p.dtype for n, p in model.named_parameters() if p.requires_grad}
    frozen = {p.dtype for p in model.parameters() if not p.requires_grad}
    assert any("modules_to_save" in n for n in trained) and any("lora_A" in n for n in trained)
    assert set(trained.values()) == {torch.float32}, trained
    assert frozen == {torch.bfloat16}, "the frozen base stays in bf16"


SHIPPED = sorted(p for p in (REPO / "yamls").rglob("*.yaml") if p.parts[-2] != "eval")


def tiny_start(path: Path, base: Path, token_data: Path, instruct: Path, run_dir: Path) -> list[str]:
    """Overrides that keep a shipped YAML as it is (optimizer, schedule and its units, FSDP, callbacks,
    max_duration) but give it a tiny model, local data, the CPU and fp32."""
    from omegaconf import OmegaConf

    raw = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    values: dict[str, object] = {
        "precision": "fp32",
        "max_seq_len": 32,
        "global_train_batch_size": 4,
        "device_train_microbatch_size": 2,
        "device_eval_batch_size": 2,
        "tokenizer.name": str(SPIECE),
        "save_folder": str(run_dir / "checkpoints"),
        "progress_bar": False,
        # W&B keeps its first run's settings for the whole process (test_train.py's offline test checks it)
        "loggers.wandb": "null",
    }
    if raw["model"].get("pretrained_model_name_or_path") is not None:
        values |= {"model.pretrained_model_name_or_path": str(base), "model.pretrained_dtype": "float32"}
    else:  # a preset: the tiny one, built on the CPU ('meta' needs CUDA; tests/training/test_distributed.py
        values |= {
            "model.size": "tiny",
            "model.init_device": "cpu",
            "model.vocab_size": 32768,
        }  # covers FSDP's meta materialisation)
    for loader in ("train_loader", "eval_loader"):
        if raw.get(loader) is None:
            continue
        if raw[loader].get("name") == "finetuning":
            values |= {f"{loader}.dataset.path": str(instruct)}
        else:
            values |= {f"{loader}.dataset.local": str(token_data), f"{loader}.dataset.remote": "null"}
    if (raw.get("callbacks") or {}).get("hf_export") is not None:
        values["callbacks.hf_export.save_folder"] = str(run_dir / "hf")
    return [f"{k}={v}" for k, v in values.items()]


@pytest.mark.parametrize("path", SHIPPED, ids=[str(p.relative_to(REPO)) for p in SHIPPED])
def test_every_shipped_yaml_builds_its_trainer(
    path: Path, base: Path, token_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A shipped YAML must never crash at start (replit-3b's warmup in batches beside a duration in tokens
    did, in Trainer.__init__). FSDP sections run Composer's FSDP1 path (on the CPU through the test shim)."""
    from replitlm.training.builders import build_trainer
    from tests.training import fsdp1_cpu
    from tests.training.test_accumulation import instruct_records, write_jsonl

    for obj, name, value in fsdp1_cpu.patches():
        monkeypatch.setattr(obj, name, value)
    monkeypatch.delenv("FSDP_VERSION", raising=False)
    instruct = write_jsonl(tmp_path / "instruct.jsonl", instruct_records())
    cfg = load_train_config(path, tiny_start(path, base, token_data, instruct, tmp_path))
    trainer = build_trainer(cfg)
    try:
        assert trainer.state.max_duration is not None
        if cfg.fsdp_config is not None:
            assert trainer.state.fsdp_enabled
    finally:
        trainer.close()
