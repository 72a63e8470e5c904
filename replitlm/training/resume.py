"""Make autoresume pick the newest *complete* checkpoint, whatever moment a previous run was killed at.

Composer writes a checkpoint in place (`ep0-ba40-rank0.pt`, or a folder of shards) and then replaces the
`latest-rank0.pt` symlink by removing it and linking it anew. A SIGKILL, an OOM kill or a preemption can land
anywhere in that sequence and leave:
  * a truncated checkpoint file, or a shard folder without its `.metadata` (written last);
  * no `latest` symlink at all (killed between the remove and the new link): autoresume would then start the
    run from scratch over the old checkpoints;
  * `latest` pointing at the previous checkpoint while a newer one is complete.
Before the trainer is built, rank 0 looks at the local save folder: incomplete checkpoints are renamed to
`*.incomplete` (kept for inspection, never resumed from) and `latest` is pointed at the newest complete one.
Remote save folders (s3://...) are left to Composer: object stores publish an object only once fully written.
"""

from __future__ import annotations

import os
import re
import zipfile
from pathlib import Path

_CHECKPOINT = re.compile(r"^ep\d+-ba(\d+)(-rank0\.pt)?$")
LATEST = "latest-rank0.pt"


def is_complete(path: Path) -> bool:
    """A monolithic checkpoint is a zip (torch.save) whose directory, written last, is intact; a sharded
    checkpoint folder is complete once torch.distributed.checkpoint has written its `.metadata`."""
    if path.is_dir():
        return (path / ".metadata").is_file()
    try:
        with zipfile.ZipFile(path) as archive:
            return bool(archive.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def checkpoints_by_batch(folder: Path) -> list[tuple[int, Path]]:
    """The checkpoints in a save folder, newest (highest batch) first."""
    found = []
    for entry in folder.iterdir():
        match = _CHECKPOINT.match(entry.name)
        if match and not entry.is_symlink():
            found.append((int(match.group(1)), entry))
    return sorted(found, key=lambda item: item[0], reverse=True)


def repair_latest(folder: str | os.PathLike[str]) -> str | None:
    """Set aside incomplete checkpoints and point `latest-rank0.pt` at the newest complete one.

    Returns a one-line description of what was changed, or None when nothing needed changing.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return None
    changes = []
    newest = None
    for _, path in checkpoints_by_batch(folder):
        if is_complete(path):
            newest = newest or path
        else:
            path.rename(path.with_name(path.name + ".incomplete"))
            changes.append(f"set aside incomplete {path.name}")
    latest = folder / LATEST
    current = os.readlink(latest) if latest.is_symlink() else None
    if newest is not None and (current is None or Path(current).name != newest.name):
        tmp = folder / f".{LATEST}.tmp"
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(newest.name)
        tmp.replace(latest)  # atomic: `latest` is never missing
        changes.append(f"{LATEST} -> {newest.name} (was {current or 'missing'})")
    elif newest is None and current is not None:
        latest.unlink()  # it pointed at nothing usable: start fresh rather than fail to load
        changes.append(f"removed {LATEST} (no complete checkpoint)")
    return "; ".join(changes) or None
