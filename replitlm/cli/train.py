"""`composer train/train.py CONFIG.yaml [key=value ...]`: the config → a Composer Trainer → fit → a summary."""

from __future__ import annotations

import argparse
import sys
import traceback
from typing import TYPE_CHECKING

from replitlm.cli import fail

if TYPE_CHECKING:
    from replitlm.training.schema import TrainConfig

USAGE = """composer train/train.py CONFIG.yaml [key=value ...]   (one process: python train/train.py or replitlm-train)

Overrides use omegaconf's dotted syntax, e.g. optimizer.lr=1e-4 train_loader.dataset.local=/data/mds
max_duration=100ba. Every key is checked before anything is built; see yamls/ for commented examples."""

# The exit status of a process that stopped because another process of the run is gone (see multinode.py).
LOST_PEER_EXIT = 3


def parse_args(argv: list[str]) -> tuple[str, list[str]]:
    parser = argparse.ArgumentParser(usage=USAGE)
    parser.add_argument("config", help="the training YAML (yamls/...)")
    parser.add_argument("overrides", nargs="*", help="key=value overrides (omegaconf dotlist)")
    args = parser.parse_args(argv)
    bad = [o for o in args.overrides if "=" not in o]
    if bad:
        parser.error(f"override '{bad[0]}' is not key=value")
    return args.config, args.overrides


def main(argv: list[str] | None = None) -> int:
    path, overrides = parse_args(sys.argv[1:] if argv is None else argv)
    from replitlm.checkpoint import CheckpointError
    from replitlm.config import ConfigError
    from replitlm.hub import HubUnreachableError
    from replitlm.training.config import TrainConfigError, load_train_config
    from replitlm.training.data import DataError
    from replitlm.training.run import train

    cfg = None
    try:
        cfg = load_train_config(path, overrides)
        train(cfg)
    except (TrainConfigError, ConfigError, CheckpointError, DataError, HubUnreachableError) as exc:
        return fail(str(exc))
    except Exception as exc:
        from replitlm.training.multinode import lost_peer, lost_peer_message

        full = _full_disk(exc, cfg) if cfg is not None else None
        if full is not None:
            return fail(str(full))
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
