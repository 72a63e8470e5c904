"""LoRA instruct-tuning end to end on the CPU: only adapters train, the adapter is PEFT's format (loads on our
model and on transformers' MPT), merging equals base + adapter, autoresume is bit-exact."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from composer.core import Callback, State
from composer.loggers import Logger
from peft import PeftModel
from safetensors.torch import load_file
from transformers import MptForCausalLM

from replitlm import ReplitLMForCausalLM
from replitlm.cli.train import main as train_main
from replitlm.training.config import load_train_config
from replitlm.training.run import train
from tests.training.test_finetuning import ALPACA, LORA_TINY
from tests.training.test_train import Recorder

# Launches processes, trains, or runs the sandbox: in `make test`, not in `make test-fast`.
pytestmark = pytest.mark.integration

IDS = torch.randint(3, 30000, (2, 24), generator=torch.Generator().manual_seed(0))


def lora_overrides(base: Path, run_dir: Path, **extra: object) -> list[str]:
    values = {
        "model.pretrained_model_name_or_path": str(base),
        "variables.data": str(ALPACA),
        "variables.run_dir": str(run_dir),
        "max_seq_len": 128,
        "global_train_batch_size": 4,
        "device_train_microbatch_size": 2,
        "optimizer.lr": 1e-2,
        "scheduler.t_warmup": "2ba",
        "max_duration": "12ba",
        "save_interval": "6ba",
        "progress_bar": False,
        **extra,
    }
    return [f"{k}={v}" for k, v in values.items()]


class Inspect(Callback):
    """Which parameters got gradients, and the trained model's logits on IDS (eval mode: no dropout)."""

    def __init__(self) -> None:
        self.with_grad: set[str] = set()
        self.logits: torch.Tensor | None = None
        self.base_weights: dict[str, torch.Tensor] = {}

    def after_backward(self, state: State, logger: Logger) -> None:
        self.with_grad |= {n for n, p in state.model.named_parameters() if p.grad is not None}

    def fit_end(self, state: State, logger: Logger) -> None:
        peft_model = state.model.model
        peft_model.eval()
        with torch.no_grad():
            self.logits = peft_model(input_ids=IDS).logits
        base_model = peft_model.get_base_model()
        self.base_weights = {
            n.replace(".base_layer", ""): p.detach().clone()
            for n, p in base_model.named_parameters()
            if "lora_" not in n
        }


@pytest.fixture(scope="module")
def lora_run(base: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Recorder, Inspect]:
    run_dir = tmp_path_factory.mktemp("lora")
    recorder, inspect = Recorder(), Inspect()
    train(load_train_config(LORA_TINY, lora_overrides(base, run_dir)), [recorder, inspect])
    return run_dir, recorder, inspect


def test_lora_lowers_the_loss_and_trains_only_the_adapters(base: Path, lora_run) -> None:
    run_dir, recorder, inspect = lora_run
    first, last = sum(recorder.losses[:3]) / 3, sum(recorder.losses[-3:]) / 3
    assert last < first - 1.0, recorder.losses
    assert inspect.with_grad and all(".lora_A." in n or ".lora_B." in n for n in inspect.with_grad)
    before = ReplitLMForCausalLM.from_pretrained(base).state_dict()
    assert before.keys() == inspect.base_weights.keys()
    assert all(torch.equal(before[k], inspect.base_weights[k]) for k in before)
    adapter = run_dir / "adapter"
    assert {"adapter_config.json", "adapter_model.safetensors", "spiece.model"} <= {
        p.name for p in adapter.iterdir()
    }
    checkpoint = torch.load(run_dir / "checkpoints" / "latest-rank0.pt", weights_only=False)
    assert all("lora_" in k for k in checkpoint["state"]["model"])  # the frozen base is not copied


def test_the_adapter_reloads_through_peft_on_our_model_and_on_transformers_mpt(base: Path, lora_run) -> None:
    run_dir, _, inspect = lora_run
    ours = PeftModel.from_pretrained(ReplitLMForCausalLM.from_pretrained(base), run_dir / "adapter").eval()
    mpt = PeftModel.from_pretrained(MptForCausalLM.from_pretrained(base), run_dir / "adapter").eval()
    with torch.no_grad():
        torch.testing.assert_close(ours(input_ids=IDS).logits, inspect.logits, rtol=0, atol=1e-5)
        torch.testing.assert_close(mpt(input_ids=IDS).logits, inspect.logits, rtol=0, atol=5e-5)
    plain = ReplitLMForCausalLM.from_pretrained(base).eval()
    with torch.no_grad():  # the adapter changed something
        assert (plain(IDS).logits - inspect.logits).abs().max() > 1e-2


def test_the_merged_model_equals_base_plus_adapter(base: Path, lora_run, tmp_path: Path) -> None:
    from replitlm.cli.merge_lora import main as merge

    run_dir, _, inspect = lora_run
    assert merge(["--adapter", str(run_dir / "adapter"), "--out", str(tmp_path / "merged")]) == 0
    merged = ReplitLMForCausalLM.from_pretrained(tmp_path / "merged").eval()
    with torch.no_grad():
        torch.testing.assert_close(merged(IDS).logits, inspect.logits, rtol=0, atol=1e-5)
    assert (tmp_path / "merged" / "spiece.model").exists() and not (
        tmp_path / "merged" / "adapter_config.json"
    ).exists()


def test_a_lora_checkpoint_converts_to_the_same_adapter(lora_run, tmp_path: Path) -> None:
    from replitlm.cli.export import main as convert

    run_dir, _, _ = lora_run
    assert convert([str(run_dir / "checkpoints" / "latest-rank0.pt"), str(tmp_path / "conv")]) == 0
    a = load_file(run_dir / "adapter" / "adapter_model.safetensors")
    b = load_file(tmp_path / "conv" / "adapter_model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert (tmp_path / "conv" / "spiece.model").exists()


def test_a_lora_run_resumes_bit_exactly(base: Path, lora_run, tmp_path: Path) -> None:
    run_dir, straight, _ = lora_run
    first, second = Recorder(crash_at=6), Recorder()
    with pytest.raises(KeyboardInterrupt):
        train(load_train_config(LORA_TINY, lora_overrides(base, tmp_path)), [first])
    train(load_train_config(LORA_TINY, lora_overrides(base, tmp_path)), [second])
    assert len(second.batches) == 6
    for a, b in zip(straight.batches, first.batches + second.batches, strict=True):
        assert torch.equal(a, b)
    assert straight.losses == first.losses + second.losses
    a = load_file(run_dir / "adapter" / "adapter_model.safetensors")
    b = load_file(tmp_path / "adapter" / "adapter_model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_strict_bad_records_stop_the_run_naming_the_line(
    base: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    data = tmp_path / "bad.jsonl"
    data.write_text('{"prompt": "a", "response": "b"}\n{"prompt": "c"}\n')
    overrides = lora_overrides(
        base, tmp_path, **{"variables.data": data, "train_loader.dataset.strict": True}
    )
    assert train_main([str(LORA_TINY), *overrides]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {data}:2: missing field 'response' (train_loader.dataset.strict is true)"


@pytest.mark.parametrize("fsdp", ["FSDP1", "FSDP2"])
def test_lora_under_fsdp_on_two_processes_saves_resumes_and_exports(
    base: Path, tmp_path: Path, fsdp: str
) -> None:
    """Checkpoints of a LoRA run under FSDP hold the adapters only, a relaunch resumes from them, and the
    final export is the adapter. FSDP1 (Composer's default, what GPU users run) goes through the CPU shim."""
    import json
    import os
    import subprocess

    from tests.conftest import REPO
    from tests.training import fsdp1_cpu
    from tests.training.test_distributed import COMPOSER, free_port

    env = {fsdp1_cpu.ENV: "1"} if fsdp == "FSDP1" else {"FSDP_VERSION": "2"}

    def launch(batches: int) -> dict:
        out = tmp_path / f"driver-{batches}.json"
        overrides = lora_overrides(
            base,
            tmp_path,
            max_seq_len=64,
            max_duration=f"{batches}ba",
            save_interval="2ba",
            fsdp_config="{sharding_strategy: FULL_SHARD}",
        )
        cmd = [*COMPOSER, "-n", "2", "--master_port", str(free_port()), "tests/training/dist_driver.py"]
        proc = subprocess.run(
            [*cmd, str(out), str(LORA_TINY), *overrides],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO), **env},
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
        return json.loads(out.read_text())

    assert len(launch(2)["grad_norms"]) == 2
    if fsdp == "FSDP2":  # sharded: one file per rank
        (sharded,) = [p for p in (tmp_path / "checkpoints").iterdir() if p.is_dir() and not p.is_symlink()]
        assert len(list(sharded.glob("*.distcp"))) == 2
    else:  # FSDP1's default: the full state on rank 0, the adapters only
        saved = torch.load(tmp_path / "checkpoints" / "ep0-ba2-rank0.pt", weights_only=False)
        keys = saved["state"]["model"].keys()
        assert keys and all("lora_" in k for k in keys), sorted(keys)[:4]
    resumed = launch(4)
    assert len(resumed["grad_norms"]) == 2, "the relaunch trains batches 3 and 4 only"
    adapted = PeftModel.from_pretrained(
        ReplitLMForCausalLM.from_pretrained(base), tmp_path / "adapter"
    ).eval()
    assert any("lora_B" in n and p.abs().sum() > 0 for n, p in adapted.named_parameters())


@pytest.mark.gpu
def test_qlora_trains_a_4bit_base_on_cuda(base: Path, tmp_path: Path) -> None:
    pytest.importorskip("bitsandbytes")
    overrides = lora_overrides(
        base, tmp_path, **{"lora.quantize": "4bit", "precision": "amp_bf16", "max_duration": "4ba"}
    )
    recorder = Recorder()
    train(load_train_config(LORA_TINY, overrides), [recorder])
    assert all(torch.isfinite(torch.tensor(recorder.losses)))
    assert (tmp_path / "adapter" / "adapter_model.safetensors").exists()


def test_quantized_loading_says_what_it_needs() -> None:
    from replitlm.lora import quantization_config

    if torch.cuda.is_available():
        pytest.skip("checks the message on machines without CUDA")
    with pytest.raises(RuntimeError, match="4bit weights \\(bitsandbytes\\) need a CUDA GPU"):
        quantization_config("4bit")
    with pytest.raises(ValueError, match="'3bit' is not one of"):
        quantization_config("3bit")


def test_eval_applies_the_adapter(base: Path, lora_run, token_data: Path, tmp_path: Path) -> None:
    """eval/eval.py --adapter: the perplexity is the adapted model's, not the base's."""
    import json

    from replitlm.cli.eval import main as evaluate

    run_dir, _, _ = lora_run
    common = ["--model", str(base), "--perplexity", str(token_data / "val"), "--limit", "4"]
    assert evaluate([*common, "--out", str(tmp_path / "base")]) == 0
    assert evaluate([*common, "--adapter", str(run_dir / "adapter"), "--out", str(tmp_path / "lora")]) == 0
    plain, adapted = (
        json.loads((tmp_path / d / "perplexity.json").read_text())["overall"] for d in ("base", "lora")
    )
    assert plain["tokens"] == adapted["tokens"] and abs(plain["loss"] - adapted["loss"]) > 1e-3
    assert evaluate([*common, "--adapter", str(tmp_path)]) == 2  # not an adapter folder: one line


def test_lora_under_fsdp1_in_one_process_is_refused_in_one_line(
    base: Path, tmp_path: Path, monkeypatch
) -> None:
    """torch 2.7's FSDP1 turns FULL_SHARD into NO_SHARD in one process, where LoRA's frozen parameters fail
    at the first forward ('Cannot writeback when the parameter shape changes', pytorch#151223)."""
    from replitlm.training.builders import build_trainer
    from replitlm.training.config import TrainConfigError
    from tests.training import fsdp1_cpu

    for obj, name, value in fsdp1_cpu.patches():
        monkeypatch.setattr(obj, name, value)
    monkeypatch.delenv("FSDP_VERSION", raising=False)
    cfg = load_train_config(
        LORA_TINY, lora_overrides(base, tmp_path, fsdp_config="{sharding_strategy: FULL_SHARD}")
    )
    with pytest.raises(TrainConfigError, match="fsdp_config: LoRA under FSDP1 in a single process"):
        build_trainer(cfg)
