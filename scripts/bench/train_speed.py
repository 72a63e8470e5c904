#!/usr/bin/env python
"""Training throughput in the Composer trainer: our ReplitLM vs transformers' MptForCausalLM, same weights.

Both models run in the same Composer Trainer setup (the wrapper, LionW, the same batches, fp32 on CPU /
amp_bf16 on GPU); rounds alternate between them so machine noise hits both alike. It prints tokens/s per
model (median over rounds) and the ratio ours / built-in (higher is better).

On a GPU it also reports MFU (model FLOPs utilisation: the FLOPs the speed monitor counts per batch over
the card's dense bf16 peak) of our model for the --gpu-sizes presets.

    python scripts/bench/train_speed.py [--d-model 256 --n-layers 4 --seq-len 512 --batch 8 --rounds 5]
    python scripts/bench/train_speed.py --gpu-sizes 125m 1b --attn-impl flex      # on a GPU
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
from composer import Trainer
from composer.core import Callback, State
from composer.loggers import Logger
from composer.models import HuggingFaceModel
from composer.utils import dist
from torch.utils.data import DataLoader
from transformers import MptConfig, MptForCausalLM

from replitlm import ReplitLMForCausalLM, config_for_size
from replitlm.training.composer_model import ComposerReplitLM
from replitlm.training.lion import DecoupledLionW


class BatchTimer(Callback):
    """Wall time of each batch (synchronising the GPU so the time is the step's, not its launch's)."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def batch_start(self, state: State, logger: Logger) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self._start = time.perf_counter()

    def batch_end(self, state: State, logger: Logger) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.times.append(time.perf_counter() - self._start)


def batches(vocab: int, batch: int, seq_len: int, count: int) -> DataLoader:
    gen = torch.Generator().manual_seed(0)
    samples = [
        {"input_ids": torch.randint(3, vocab, (seq_len,), generator=gen)} for _ in range(batch * count)
    ]

    def collate(rows: list[dict]) -> dict[str, torch.Tensor]:
        ids = torch.stack([r["input_ids"] for r in rows])
        return {"input_ids": ids, "labels": ids.clone()}

    return DataLoader(samples, batch_size=batch, collate_fn=collate)


def make_trainer(model: HuggingFaceModel, args: argparse.Namespace, vocab: int, timer: BatchTimer) -> Trainer:
    return Trainer(
        model=model,
        train_dataloader=batches(vocab, args.batch, args.seq_len, 10_000),
        optimizers=DecoupledLionW(model.parameters(), lr=1e-4),
        max_duration=f"{args.rounds * args.steps + args.warmup}ba",
        precision="amp_bf16" if torch.cuda.is_available() else "fp32",
        device_train_microbatch_size=args.microbatch or args.batch,
        callbacks=[timer],
        progress_bar=False,
        log_to_console=False,
    )


def compare_with_builtin(args: argparse.Namespace) -> None:
    config = config_for_size(
        "125m", d_model=args.d_model, n_heads=args.n_heads, n_layers=args.n_layers, max_seq_len=args.seq_len
    )
    config.attn_config["attn_impl"] = args.attn_impl
    torch.manual_seed(0)
    ours = ReplitLMForCausalLM(config)
    builtin = MptForCausalLM(
        MptConfig(**{**config.to_dict(), "attn_config": {**config.attn_config, "attn_impl": "torch"}})
    )
    builtin.load_state_dict(ours.state_dict(), strict=False)
    builtin.tie_weights()
    timers = {"ours": BatchTimer(), "built-in MPT": BatchTimer()}
    trainers = {
        "ours": make_trainer(ComposerReplitLM(ours), args, config.vocab_size, timers["ours"]),
        "built-in MPT": make_trainer(
            HuggingFaceModel(builtin, use_logits=True, shift_labels=True),
            args,
            config.vocab_size,
            timers["built-in MPT"],
        ),
    }
    for name, trainer in trainers.items():
        trainer.fit(duration=f"{args.warmup}ba")  # warm-up: allocator, kernels, first-call overheads
        timers[name].times.clear()
    rates: dict[str, list[float]] = {name: [] for name in trainers}
    tokens = args.batch * args.seq_len
    for _ in range(args.rounds):
        for name, trainer in trainers.items():
            timers[name].times.clear()
            trainer.fit(duration=f"{args.steps}ba")
            rates[name].append(tokens * len(timers[name].times) / sum(timers[name].times))
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"
    print(
        f"\ntraining in the Composer trainer, {device}: d_model {args.d_model}, {args.n_layers} layers, "
        f"batch {args.batch} x {args.seq_len} tokens, {args.rounds} rounds x {args.steps} steps (medians)"
    )
    print(f"{'model':<14}{'tokens/s':>12}   per round")
    for name, values in rates.items():
        print(f"{name:<14}{statistics.median(values):>12,.0f}   " + " ".join(f"{v:,.0f}" for v in values))
    ratio = statistics.median(rates["ours"]) / statistics.median(rates["built-in MPT"])
    print(f"ratio ours / built-in: {ratio:.2f}x (target >= 1.2x)")


def gpu_mfu(args: argparse.Namespace) -> None:
    from composer.callbacks.speed_monitor import GPU_AVAILABLE_FLOPS

    name = torch.cuda.get_device_name().lower()
    key = next((k for k in GPU_AVAILABLE_FLOPS if k in name.replace(" ", "-")), None)
    peak = GPU_AVAILABLE_FLOPS.get(key, {}).get("amp_bf16") if key else None
    print(
        f"\nMFU on {torch.cuda.get_device_name()} (peak bf16 {peak / 1e12 if peak else float('nan'):.0f} TFLOP/s)"
    )
    print(f"{'size':<6}{'attn':<7}{'batch':>6}{'tokens/s':>12}{'TFLOP/s':>10}{'MFU':>8}")
    for size in args.gpu_sizes:
        config = config_for_size(size, max_seq_len=args.gpu_seq_len)
        config.attn_config["attn_impl"] = args.attn_impl
        model = ComposerReplitLM(ReplitLMForCausalLM(config).cuda())
        timer = BatchTimer()
        run_args = argparse.Namespace(**{**vars(args), "seq_len": args.gpu_seq_len, "batch": args.gpu_batch})
        trainer = make_trainer(model, run_args, config.vocab_size, timer)
        trainer.fit(duration=f"{args.warmup}ba")
        timer.times.clear()
        trainer.fit(duration=f"{args.steps * 2}ba")
        seconds = statistics.median(timer.times)
        flops = model.flops_per_batch({"input_ids": torch.empty(args.gpu_batch, args.gpu_seq_len)}) / seconds
        mfu = flops / peak if peak else float("nan")
        tokens = args.gpu_batch * args.gpu_seq_len / seconds
        print(
            f"{size:<6}{args.attn_impl:<7}{args.gpu_batch:>6}{tokens:>12,.0f}{flops / 1e12:>10.1f}{mfu:>8.1%}"
        )
        trainer.close()
        del trainer, model
        torch.cuda.empty_cache()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--d-model", type=int, default=256)
    p.add_argument("--n-heads", type=int, default=4)
    p.add_argument("--n-layers", type=int, default=4)
    p.add_argument("--seq-len", type=int, default=512)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--microbatch", type=int, default=0, help="device microbatch (default: the whole batch)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=3, help="timed steps per round")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--attn-impl", default="torch", help="our model's attention backend")
    p.add_argument("--gpu-sizes", nargs="*", default=["125m", "1b"], help="presets for the GPU MFU table")
    p.add_argument("--gpu-seq-len", type=int, default=2048)
    p.add_argument("--gpu-batch", type=int, default=8)
    p.add_argument("--skip-compare", action="store_true", help="GPU: only the MFU table")
    args = p.parse_args()
    dist.initialize_dist("gpu" if torch.cuda.is_available() else "cpu")
    if not args.skip_compare:
        compare_with_builtin(args)
    if torch.cuda.is_available() and args.gpu_sizes:
        gpu_mfu(args)
    elif not torch.cuda.is_available():
        print("(no GPU: the MFU table of the presets needs one)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
