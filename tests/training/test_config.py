"""The training config: every shipped YAML loads and validates; bad keys and values name themselves."""

from __future__ import annotations

from pathlib import Path

import pytest

from replitlm.training.config import TrainConfigError, load_train_config
from tests.conftest import REPO

YAMLS = sorted(
    p for p in (REPO / "yamls").rglob("*.yaml") if p.parts[-2] != "eval"
)  # eval YAMLs: tests/evaluation
TINY = REPO / "yamls" / "quickstart" / "tiny-cpu.yaml"


@pytest.mark.parametrize("path", YAMLS, ids=[str(p.relative_to(REPO)) for p in YAMLS])
def test_every_shipped_yaml_loads_and_starts_with_its_command(path: Path) -> None:
    cfg = load_train_config(path)
    assert cfg.max_duration
    head = path.read_text().split("\n\n")[0]
    assert f"composer train/train.py {path.relative_to(REPO)}" in head, (
        "each YAML starts with the command that runs it"
    )


def test_shipped_yamls_cover_the_documented_recipes() -> None:
    names = {str(p.relative_to(REPO / "yamls")) for p in YAMLS}
    assert {
        "quickstart/tiny-cpu.yaml",
        "pretrain/replit-3b.yaml",
        "pretrain/replit-125m.yaml",
        "finetune.yaml",
        "finetune/lora-instruct.yaml",
        "quickstart/lora-tiny-cpu.yaml",
    } <= names


def test_overrides_and_interpolation() -> None:
    cfg = load_train_config(TINY, ["variables.run_dir=/elsewhere", "optimizer.lr=0.5", "model.n_layers=3"])
    assert cfg.train_loader.dataset.local == "/elsewhere/mds"
    assert cfg.tokenizer.name == "/elsewhere/tokenizer"
    assert cfg.optimizer.lr == 0.5
    assert cfg.model.config_overrides["n_layers"] == 3
    assert cfg.train_loader.dataset.shuffle_seed == cfg.seed


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optimizer.lrr=1", "optimizer.lrr: unknown key (did you mean 'lr'?)"),
        ("max_seq_length=5", "max_seq_length: unknown key (did you mean 'max_seq_len'?)"),
        (
            "train_loader.dataset.shufle=false",
            "train_loader.dataset.shufle: unknown key (did you mean 'shuffle'?)",
        ),
        ("model.d_modle=64", "model.d_modle: unknown key (did you mean 'd_model'?)"),
        ("fsdp_config.sharding_stratgy=FULL_SHARD", "fsdp_config.sharding_stratgy: unknown key"),
        ("callbacks.speed_monitr={}", "callbacks.speed_monitr: unknown key (did you mean 'speed_monitor'?)"),
        ("optimizer.lr=fast", "optimizer.lr: expected float, got str 'fast'"),
        ("global_train_batch_size=-4", "global_train_batch_size: must be a positive integer"),
        ("optimizer.name=lion", "optimizer.name: 'lion' is not one of"),
        ("max_duration=ten", "max_duration: 'ten' is not a duration"),
        ("precision=bf16", "precision: 'bf16' is not one of"),
        ("model.size=7b", "model.size: '7b' is not one of"),
        ("model.pretrained_model_name_or_path=x", "model: set exactly one of `size`"),
        ("model.init_device=meta", "model.init_device: 'meta' builds the model without memory"),
        ("save_folder=null", "autoresume: needs save_folder"),
        ("optimizer.betas=[0.9]", "optimizer.betas: must be two numbers in [0, 1)"),
        ("train_loader.dataset.streams.a.proportion=1", "train_loader.dataset: set either `local`/`remote`"),
    ],
)
def test_bad_values_name_the_key(override: str, message: str) -> None:
    with pytest.raises(TrainConfigError) as err:
        load_train_config(TINY, [override])
    assert message in str(err.value)


def test_a_missing_or_malformed_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(TrainConfigError, match=r"nope\.yaml: no such config file"):
        load_train_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(TrainConfigError, match=r"bad\.yaml"):
        load_train_config(bad)
    missing = tmp_path / "missing.yaml"
    missing.write_text("model: {size: tiny}\n")
    with pytest.raises(TrainConfigError, match="train_loader: required key is missing"):
        load_train_config(missing)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "model.attn_config.attn_imp=flex",
            "model.attn_config.attn_imp: unknown key (did you mean 'attn_impl'?)",
        ),
        ("model.n_heads=3", "model.n_heads"),
    ],
)
def test_model_fields_in_the_section_are_checked_by_the_model_config(override: str, message: str) -> None:
    with pytest.raises(TrainConfigError) as err:
        load_train_config(TINY, [override])
    assert message in str(err.value)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["max_duration=1000000tok", "scheduler.t_warmup=20ba"],
            "scheduler.t_warmup: '20ba' counts batches but the schedule runs in tokens (max_duration "
            "'1000000tok'); Composer needs one unit",
        ),
        (
            ["max_duration=2ep", "scheduler.t_warmup=100sp"],
            "scheduler.t_warmup: '100sp' counts samples but the schedule runs in batches",
        ),
        (
            ["max_duration=100ba", "scheduler.t_max=1000000tok"],
            "(max_duration '100ba' (scheduler.t_max '1000000tok'))",
        ),
    ],
)
def test_warmup_and_duration_in_different_units_are_refused_before_the_trainer(
    overrides: list[str], message: str
) -> None:
    with pytest.raises(TrainConfigError) as err:
        load_train_config(TINY, overrides)
    assert message in str(err.value)


@pytest.mark.parametrize(
    "overrides",
    [
        ["max_duration=1000000tok", "scheduler.t_warmup=0.01dur"],
        ["max_duration=1000000tok", "scheduler.t_warmup=5000tok"],
        ["max_duration=2ep", "scheduler.t_warmup=10ba"],
        ["max_duration=2ep", "scheduler.t_warmup=1ep"],
    ],
)
def test_units_composer_accepts_pass(overrides: list[str]) -> None:
    load_train_config(TINY, overrides)


def test_scheduler_defaults_are_composers() -> None:
    """A YAML that omits alpha_f behaves as in llm-foundry (Composer's default, 0.0)."""
    import inspect

    from composer.optim import CosineAnnealingWithWarmupScheduler, LinearWithWarmupScheduler

    from replitlm.training.config import SchedulerSection

    for scheduler in (CosineAnnealingWithWarmupScheduler, LinearWithWarmupScheduler):
        default = inspect.signature(scheduler).parameters["alpha_f"].default
        assert SchedulerSection().alpha_f == default


def test_a_missing_yaml_lists_the_ones_that_exist(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    with pytest.raises(TrainConfigError) as err:
        load_train_config("yamls/finetune/replit-3b.yaml")
    message = str(err.value)
    assert message.startswith("yamls/finetune/replit-3b.yaml: no such config file; the YAMLs here: ")
    assert "yamls/finetune.yaml" in message and "yamls/quickstart/tiny-cpu.yaml" in message
    assert "humaneval" not in message, "evaluation YAMLs are not training configs"


def test_machine_checks_say_what_the_cpu_or_one_process_cannot_do(monkeypatch: pytest.MonkeyPatch) -> None:
    from replitlm.training.validation import validate_for_machine

    monkeypatch.delenv("FSDP_VERSION", raising=False)
    lora = REPO / "yamls" / "quickstart" / "lora-tiny-cpu.yaml"
    cases = [
        (TINY, ["precision=amp_bf16"], "precision: amp_bf16 needs a GPU"),
        (
            TINY,
            ["model.pretrained_dtype=bfloat16"],
            "model.pretrained_dtype: bfloat16 weights need amp on a GPU",
        ),
        (
            TINY,
            ["model.init_device=meta", "fsdp_config={}"],
            "model.init_device: 'meta' initialises on the GPU",
        ),
        (lora, ["lora.quantize=4bit", "fsdp_config={}"], "lora.quantize: a 4/8-bit base trains on one GPU"),
        (lora, ["fsdp_config={}"], "fsdp_config: LoRA under FSDP1 in a single process"),
    ]
    for path, overrides, message in cases:
        cfg = load_train_config(path, overrides)
        with pytest.raises(TrainConfigError, match=message):
            validate_for_machine(cfg, on_gpu="quantize" in message, world_size=1)
    validate_for_machine(load_train_config(TINY, ["precision=amp_bf16"]), on_gpu=True, world_size=1)
    validate_for_machine(load_train_config(lora, ["fsdp_config={}"]), on_gpu=True, world_size=2)
