"""Multi-node fixes: per-node signal files on a shared save_folder, and a clear error when a peer is lost."""

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


# What gloo and NCCL say when a peer process is gone: killed (the kernel closes its sockets), unreachable
# (a collective waits dist_timeout), or the communicator aborted. Gloo raises plain RuntimeErrors.
_LOST_PEER = (
    "Connection closed by peer",
    "Connection reset by peer",
    "Broken pipe",
    "pair closure",
    "Timed out waiting",
    "gloo/transport",
    "NCCL communicator was aborted",
    "Watchdog caught collective operation timeout",
)


def lost_peer(exc: BaseException) -> bool:
    """Whether `exc` (or an exception it was raised from) says that another process of the run is gone."""
    import torch.distributed as torch_dist

    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, torch_dist.DistError):
            return True
        if isinstance(exc, RuntimeError) and any(marker in str(exc) for marker in _LOST_PEER):
            return True
        exc = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)  # as tracebacks show
    return False


def lost_peer_message(exc: BaseException, save_folder: str | None, autoresume: bool) -> str:
    """One paragraph for the log: which process stopped, why, and how to restart."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    where = f"rank {dist.get_global_rank()} of {dist.get_world_size()} (node {dist.get_node_rank()})"
    if autoresume and save_folder:
        restart = (
            "Restart the run on every node with the same command: autoresume continues from the last "
            f"checkpoint in {save_folder}."
        )
    else:
        restart = (
            "Restart the run on every node; to continue from the last checkpoint set autoresume=true with a "
            "fixed run_name and save_folder (or load_path=... to a checkpoint)."
        )
    return (
        f"error: lost contact with another process of the distributed run ({first}). Another node or process "
        f"died (or never started), or the network between nodes failed; {where} stops here instead of waiting. {restart}"
    )
