"""`composer train/train.py CONFIG.yaml [key=value ...]`: the config → a Composer Trainer → fit → a summary."""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from typing import Any

from replitlm.training.config import TrainConfig, TrainConfigError, load_train_config

USAGE = """composer train/train.py CONFIG.yaml [key=value ...]   (or: python train/train.py ... for one process)

Overrides use omegaconf's dotted syntax, e.g. optimizer.lr=1e-4 train_loader.dataset.local=/data/mds
max_duration=100ba. Every key is checked before anything is built; see yamls/ for commented examples."""

# The exit status of a process that stopped because another process of the run is gone (see multinode.py).
LOST_PEER_EXIT = 3


def parse_args(argv: list[str]) -> tuple[str, list[str]]:
    parser = argparse.ArgumentParser(prog="train/train.py", usage=USAGE)
    parser.add_argument("config", help="the training YAML (yamls/...)")
    parser.add_argument("overrides", nargs="*", help="key=value overrides (omegaconf dotlist)")
    args = parser.parse_args(argv)
    bad = [o for o in args.overrides if "=" not in o]
    if bad:
        parser.error(f"override '{bad[0]}' is not key=value")
    return args.config, args.overrides


def train(cfg: TrainConfig, extra_callbacks: list | tuple = ()) -> dict[str, float]:
    """Build and run the trainer; returns the final eval metrics (name → value), if there is an eval loader."""
    from replitlm.training.builders import build_trainer
    from replitlm.training.callbacks import LossHistory

    history = LossHistory()
    trainer = build_trainer(cfg, [history, *extra_callbacks])
    start, first_batch = time.perf_counter(), int(trainer.state.timestamp.batch)  # > 0 when resumed
    try:
        if _finished(trainer):
            print(
                f"the run already reached max_duration={trainer.state.max_duration} (resumed from its last "
                "checkpoint): nothing to train. Raise max_duration to continue, or use a new save_folder/run_name."
            )
        else:
            trainer.fit()
    except BaseException:
        # Not Trainer.close(): it ends with a barrier, which would wait dist_timeout again for a lost peer
        # (or pair with an unrelated collective of a rank still training) and hide this exception.
        trainer.engine.close()
        raise
    trainer.close()
    metrics = {
        f"{label}/{name}": float(metric.compute())
        for label, group in trainer.state.eval_metrics.items()
        for name, metric in group.items()
    }
    _summary(trainer, history.losses, metrics, time.perf_counter() - start, first_batch)
    return metrics


def _finished(trainer: Any) -> bool:
    limit = trainer.state.max_duration
    return limit is not None and trainer.state.timestamp.get(limit.unit) >= limit


def _summary(
    trainer: Any, losses: list[float], metrics: dict[str, float], seconds: float, first_batch: int = 0
) -> None:
    from composer.utils import dist

    if dist.get_global_rank() != 0:
        return
    stamp = trainer.state.timestamp
    resumed = f"resumed at batch {first_batch}, " if first_batch else ""
    print(
        f"\nat batch {int(stamp.batch)} ({int(stamp.token)} tokens); this session: {resumed}{seconds:.0f} s",
        flush=True,
    )
    if losses:
        n = max(1, min(10, len(losses) // 2))
        first, last = sum(losses[:n]) / n, sum(losses[-n:]) / n
        print(f"  training loss: {first:.3f} (first {n} batches) -> {last:.3f} (last {n})", flush=True)
    for name, value in metrics.items():
        print(f"  {name}: {value:.4f}", flush=True)


def main(argv: list[str] | None = None) -> int:
    from replitlm.checkpoint import CheckpointError
    from replitlm.config import ConfigError
    from replitlm.training.data import DataError

    path, overrides = parse_args(sys.argv[1:] if argv is None else argv)
    cfg = None
    try:
        cfg = load_train_config(path, overrides)
        train(cfg)
    except (TrainConfigError, ConfigError, CheckpointError, DataError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        from replitlm.training.multinode import lost_peer, lost_peer_message

        full = _full_disk(exc, cfg) if cfg is not None else None
        if full is not None:
            print(f"error: {full}", file=sys.stderr)
            return 2
        if cfg is None or not lost_peer(exc):
            raise
        traceback.print_exc()  # where it happened, for the record; the summary line comes last
        print(lost_peer_message(exc, cfg.save_folder, cfg.autoresume), file=sys.stderr, flush=True)
        return LOST_PEER_EXIT
    return 0


_WRITE_FAILED = ("No space left", "unexpected pos", "failed writing", "Disk quota exceeded")


def _full_disk(exc: BaseException, cfg: TrainConfig) -> str | None:
    """A one-line message when `exc` is a failed write (torch.save hides ENOSPC behind 'unexpected pos') and
    the checkpoint or export folder's disk is full; None for any other error."""
    import errno
    import shutil
    from pathlib import Path

    chain, seen = [], exc
    while seen is not None:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    if not any(
        getattr(e, "errno", None) in (errno.ENOSPC, errno.EDQUOT) or any(m in str(e) for m in _WRITE_FAILED)
        for e in chain
    ):
        return None
    export = cfg.callbacks.hf_export
    folders = [
        ("save_folder", cfg.save_folder),
        ("callbacks.hf_export.save_folder", export and export.save_folder),
    ]
    for key, folder in folders:
        if not folder or "://" in folder:
            continue
        path = Path(folder.replace("{run_name}", cfg.run_name or ""))
        while not path.exists() and path != path.parent:
            path = path.parent
        usage = shutil.disk_usage(path)
        if usage.free < min(64 << 20, usage.total // 100):
            return (
                f"{key}: the disk of {folder} is full ({usage.free >> 20} MB free of {usage.total >> 20} MB) while "
                "writing; the partial checkpoint or export is never used (autoresume sets it aside). Free space "
                "and rerun the same command to continue from the last complete checkpoint."
            )
    return None
