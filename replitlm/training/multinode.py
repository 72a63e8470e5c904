"""Multi-node fixes: per-node signal files on a shared save_folder."""

from __future__ import annotations

from typing import Any

from composer.utils import dist


def per_node_signal_files() -> None:
    """Give each node its own signal file name, so that nodes sharing a save_folder do not race.

    Composer 0.32.1's autoresume (and checkpoint loading) has local rank 0 of every node write a signal file in
    the save_folder, wait at a barrier, then delete it. `dist.get_node_signal_file_name` broadcasts rank 0's
    name to all ranks, so on shared storage every node writes and deletes the *same* file and all but one
    node fail with FileNotFoundError (llm-foundry#1736) — every multi-node run with autoresume and a shared
    save_folder, the setup the README recommends. Appending this node's rank keeps the names unique per node
    and the same within a node (all that the file-based wait needs). Idempotent.
    """
    original = dist.get_node_signal_file_name
    if getattr(original, "per_node", False):
        return

    def get_node_signal_file_name(rng: Any = None) -> str:
        return f"{original(rng)}-node{dist.get_node_rank()}"  # the broadcast stays a collective on all ranks

    get_node_signal_file_name.per_node = True  # type: ignore[attr-defined]
    dist.get_node_signal_file_name = get_node_signal_file_name

