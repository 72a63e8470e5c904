"""Training end to end on the CPU: loss falls, checkpoints, bit-exact resumption, HF export, NaN stop."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from composer.core import Callback, State
from composer.loggers import Logger
from transformers import MptForCausalLM

from replitlm import ReplitLMForCausalLM
from replitlm.training.callbacks import LossHistory, NonFiniteLossError
from replitlm.training.config import load_train_config
from replitlm.training.run import train
from tests.training.conftest import TINY, tiny_overrides

# Launches processes, trains, or runs the sandbox: in `make test`, not in `make test-fast`.
pytestmark = pytest.mark.integration


class Recorder(Callback):
    """Keeps each batch's input ids and training loss; optionally stops (as a crash would) at a batch."""

    def __init__(self, crash_at: int | None = None, poison_at: int | None = None) -> None:
        self.batches: list[torch.Tensor] = []
        self.losses: list[float] = []
        self.crash_at, self.poison_at = crash_at, poison_at

    def batch_start(self, state: State, logger: Logger) -> None:
        done = int(state.timestamp.batch)
        if done == self.crash_at:
            raise KeyboardInterrupt(f"simulated crash after batch {done}")
        if done == self.poison_at:
            with torch.no_grad():
                next(state.model.parameters()).fill_(float("nan"))
        self.batches.append(state.batch["input_ids"].clone())

    def batch_end(self, state: State, logger: Logger) -> None:
        self.losses.append(float(state.loss))


def run(data: Path, run_dir: Path, callbacks: list[Callback] = (), **overrides: object) -> dict[str, float]:
    cfg = load_train_config(TINY, tiny_overrides(data, run_dir, **overrides))
    return train(cfg, callbacks)


def weights_of(folder: Path) -> dict[str, torch.Tensor]:
    return ReplitLMForCausalLM.from_pretrained(folder).state_dict()


def test_loss_falls_and_everything_is_written(token_data: Path, tmp_path: Path) -> None:
    rec = Recorder()
    metrics = run(
        token_data, tmp_path, [rec], max_duration="24ba", save_interval="12ba", **{"optimizer.lr": 1e-2}
    )
    first, last = sum(rec.losses[:3]) / 3, sum(rec.losses[-3:]) / 3
    assert first > math.log(1000) and last < first - 1.5, rec.losses
    assert math.isclose(
        metrics["eval/LanguagePerplexity"], math.exp(metrics["eval/LanguageCrossEntropy"]), rel_tol=1e-4
    )
    assert metrics["eval/LanguageCrossEntropy"] < first - 1.0
    ckpts = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert {"ep0-ba12-rank0.pt", "ep0-ba24-rank0.pt"} <= set(ckpts)
    assert (tmp_path / "hf" / "model.safetensors").exists() and (tmp_path / "hf" / "spiece.model").exists()


def test_hf_export_loads_in_transformers_mpt_with_identical_logits(token_data: Path, tmp_path: Path) -> None:
    run(token_data, tmp_path, max_duration="3ba")
    ours = ReplitLMForCausalLM.from_pretrained(tmp_path / "hf").eval()
    mpt = MptForCausalLM.from_pretrained(tmp_path / "hf").eval()
    ids = torch.randint(3, 1000, (2, 20))
    with torch.no_grad():  # the same weights; logits differ only by fp32 rounding (SDPA vs MPT's matmuls)
        torch.testing.assert_close(ours(ids).logits, mpt(ids).logits, rtol=0, atol=2e-5)
    assert all(torch.equal(v, mpt.state_dict()[k]) for k, v in ours.state_dict().items())
    assert ours.config.vocab_size == 32768 and ours.config.max_seq_len == 32


def test_resumption_is_bit_exact_with_the_same_sample_order(token_data: Path, tmp_path: Path) -> None:
    """8 batches straight == 4 batches, a crash, and autoresume for the rest: same samples, same weights."""
    common = {"max_duration": "8ba", "save_interval": "4ba", "autoresume": True, "eval_interval": "100ba"}
    straight = Recorder()
    run(token_data, tmp_path / "a", [straight], **common)
    first, second = Recorder(crash_at=4), Recorder()
    with pytest.raises(KeyboardInterrupt):
        run(token_data, tmp_path / "b", [first], **common)
    assert (tmp_path / "b" / "checkpoints" / "ep0-ba4-rank0.pt").exists()
    run(token_data, tmp_path / "b", [second], **common)
    assert len(second.batches) == 4
    for a, b in zip(straight.batches, first.batches + second.batches, strict=True):
        assert torch.equal(a, b)
    assert straight.losses == first.losses + second.losses
    wa, wb = weights_of(tmp_path / "a" / "hf"), weights_of(tmp_path / "b" / "hf")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_a_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(
    token_data: Path, tmp_path: Path
) -> None:
    with pytest.raises(NonFiniteLossError, match="NaN or infinite at batch 5"):
        run(token_data, tmp_path, [Recorder(poison_at=4)], max_duration="8ba", save_interval="2ba")
    names = {p.name for p in (tmp_path / "checkpoints").iterdir()}
    assert "ep0-ba4-rank0.pt" in names and not any("ba5" in n or "ba6" in n for n in names)
    assert not (tmp_path / "hf").exists()


class PoisonMicrobatch(Callback):
    """Turns one microbatch's loss into NaN in its forward's output (as an overflow would)."""

    def __init__(self, batch: int, microbatch: int) -> None:
        self.batch, self.microbatch, self.seen = batch, microbatch, 0

    def batch_start(self, state: State, logger: Logger) -> None:
        self.seen = 0

    def after_forward(self, state: State, logger: Logger) -> None:
        if int(state.timestamp.batch) + 1 == self.batch and self.seen == self.microbatch:
            state.outputs["loss"] = state.outputs["loss"] * float("nan")
        self.seen += 1


@pytest.mark.parametrize("microbatch", [0, 1])
def test_a_nan_in_any_microbatch_stops_the_run_before_its_update_and_checkpoint(
    token_data: Path, tmp_path: Path, microbatch: int
) -> None:
    """Two microbatches per batch (4 samples, microbatch 2); the first one's NaN hides behind the second's
    finite loss in `state.loss`."""
    history = LossHistory()
    with pytest.raises(NonFiniteLossError, match="NaN or infinite at batch 2: stopping before its update"):
        run(
            token_data,
            tmp_path,
            [PoisonMicrobatch(2, microbatch), history],
            max_duration="4ba",
            save_interval="1ba",
        )
    names = {p.name for p in (tmp_path / "checkpoints").iterdir()}
    assert "ep0-ba1-rank0.pt" in names and not any("ba2" in n or "ba3" in n for n in names), names
    assert (tmp_path / "checkpoints" / "latest-rank0.pt").resolve().name == "ep0-ba1-rank0.pt"
    assert len(history.losses) == 1 and math.isfinite(history.losses[0])


def test_the_loss_summary_is_the_token_weighted_mean_of_every_microbatch(
    token_data: Path, tmp_path: Path
) -> None:
    seen: list[float] = []

    class Each(Callback):
        def after_loss(self, state: State, logger: Logger) -> None:
            seen.append(float(state.loss))

    history = LossHistory()
    run(token_data, tmp_path, [Each(), history], max_duration="2ba")
    assert len(seen) == 4  # 2 batches x 2 microbatches of equal, fully labelled rows
    assert history.losses == pytest.approx([(seen[0] + seen[1]) / 2, (seen[2] + seen[3]) / 2], rel=1e-6)


def test_sequence_id_reaches_the_model_when_it_attends_per_document(token_data: Path, tmp_path: Path) -> None:
    seen: list[torch.Tensor] = []

    class Grab(Callback):
        def before_forward(self, state: State, logger: Logger) -> None:
            seen.append(state.batch.get("sequence_id"))

    run(token_data, tmp_path, [Grab()], max_duration="1ba")
    assert seen[0] is not None and seen[0][0, 0] == 0 and seen[0][0, -1] == 1
    seen.clear()
    run(
        token_data,
        tmp_path / "off",
        [Grab()],
        max_duration="1ba",
        **{"model.attn_config.attn_uses_sequence_id": False},
    )
    assert seen[0] is None


def test_a_composer_checkpoint_converts_to_the_same_hf_folder(token_data: Path, tmp_path: Path) -> None:
    from replitlm.cli.export import main as convert

    run(token_data, tmp_path, max_duration="2ba")
    assert convert([str(tmp_path / "checkpoints" / "latest-rank0.pt"), str(tmp_path / "conv")]) == 0
    a, b = weights_of(tmp_path / "conv"), weights_of(tmp_path / "hf")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert (tmp_path / "conv" / "spiece.model").read_bytes() == (
        tmp_path / "hf" / "spiece.model"
    ).read_bytes()


def test_converting_something_else_names_the_problem(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from replitlm.cli.export import main as convert

    assert convert([str(tmp_path / "missing.pt"), str(tmp_path / "out")]) == 2
    assert "missing.pt: no such checkpoint" in capsys.readouterr().err
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a pickle")
    assert convert([str(junk), str(tmp_path / "out")]) == 2
    assert "junk.pt: not a readable Composer checkpoint" in capsys.readouterr().err
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.ones(2)}, other)
    assert convert([str(other), str(tmp_path / "out")]) == 2
    assert "was it written by train/train.py" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_wandb_logs_offline(token_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    run(token_data, tmp_path, max_duration="2ba", **{"loggers.wandb.project": "replitlm-test"})
    (offline,) = (tmp_path / "wandb").glob("offline-run-*")
    assert list(offline.glob("*.wandb")), "the offline run holds its logged history"


def test_fine_tuning_starts_from_a_pretrained_folder(token_data: Path, tmp_path: Path) -> None:
    from replitlm import config_for_size

    torch.manual_seed(5)
    base = ReplitLMForCausalLM(
        config_for_size("tiny", d_model=64, n_heads=2, vocab_size=32768, max_seq_len=64)
    )
    base.save_pretrained(tmp_path / "base")
    overrides = {
        "model.size": "null",
        "model.pretrained_model_name_or_path": str(tmp_path / "base"),
        "model.d_model": 64,  # explicit fields must agree with the checkpoint (strict loading)
        "model.attn_config.attn_impl": "flex",  # a config override applied on top of the folder's config
        "optimizer.lr": 1e-12,  # so the exported weights are the loaded ones
        "max_duration": "1ba",
    }
    run(token_data, tmp_path, **overrides)
    tuned = ReplitLMForCausalLM.from_pretrained(tmp_path / "hf")
    assert tuned.config.attn_config["attn_impl"] == "flex" and tuned.config.max_seq_len == 32
    for name, tensor in base.state_dict().items():
        torch.testing.assert_close(tuned.state_dict()[name], tensor, rtol=0, atol=1e-9)


def test_a_mixture_of_streams_and_interval_exports(token_data: Path, tmp_path: Path) -> None:
    rec = Recorder()
    streams = {
        "train_loader.dataset.local": "null",
        "train_loader.dataset.streams.a.local": str(token_data),
        "train_loader.dataset.streams.a.split": "train",
        "train_loader.dataset.streams.a.proportion": 0.5,
        "train_loader.dataset.streams.b.local": str(token_data),
        "train_loader.dataset.streams.b.split": "val",
        "train_loader.dataset.streams.b.proportion": 0.5,
        "train_loader.dataset.epoch_size": 64,
        "callbacks.hf_export.interval": "2ba",
    }
    run(token_data, tmp_path, [rec], max_duration="4ba", **streams)
    val_starts = {int(s[0]) for s in read_split(token_data / "val")}
    seen_val = sum(int(row[0]) in val_starts for batch in rec.batches for row in batch)
    assert 0 < seen_val < 16, "both streams feed the batches"
    assert (tmp_path / "hf-ba2" / "model.safetensors").exists() and (tmp_path / "hf-ba4").exists()
    assert (tmp_path / "hf" / "model.safetensors").exists()


def read_split(folder: Path) -> list:
    from streaming import StreamingDataset

    return [sample["tokens"] for sample in StreamingDataset(local=str(folder), shuffle=False, batch_size=1)]


def test_missing_shards_are_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from replitlm.cli.train import main

    args = tiny_overrides(tmp_path / "nowhere", tmp_path)
    assert main([str(TINY), *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{tmp_path / 'nowhere' / 'train' / 'index.json'} not found" in err
    if not torch.cuda.is_available():
        assert main([str(TINY), *tiny_overrides(tmp_path, tmp_path, precision="amp_bf16")]) == 2
        assert "precision: amp_bf16 needs a GPU" in capsys.readouterr().err
    assert main([str(TINY), "optimizer.lrr=1"]) == 2
    assert "optimizer.lrr: unknown key (did you mean 'lr'?)" in capsys.readouterr().err


def test_an_error_that_is_not_about_the_checkpoint_keeps_its_own_message(
    token_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a checkpoint to resume from, a Trainer error raised elsewhere (here Composer's own unit check of
    a schedule that validation would have refused) is not relabelled 'checkpoint cannot be loaded'."""
    from composer.optim import CosineAnnealingWithWarmupScheduler

    from replitlm.checkpoint import CheckpointError
    from replitlm.training import builders

    common = {"autoresume": True, "save_interval": "2ba", "max_duration": "2ba"}
    run(token_data, tmp_path, **common)
    assert (tmp_path / "checkpoints" / "latest-rank0.pt").exists()
    monkeypatch.setattr(builders, "build_scheduler", lambda cfg: CosineAnnealingWithWarmupScheduler("64tok"))
    with pytest.raises(ValueError, match="t_warmup and t_max must use the same units") as err:
        run(token_data, tmp_path, **{**common, "max_duration": "4ba"})
    assert not isinstance(err.value, CheckpointError)
