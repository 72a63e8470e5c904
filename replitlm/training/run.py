"""Run a training config: the config → a Composer Trainer → fit → a summary (the CLI is replitlm.cli.train)."""

from __future__ import annotations

import time
from typing import Any

from replitlm.training.schema import TrainConfig


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
