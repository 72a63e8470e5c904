"""One-line errors when a Hugging Face hub id cannot be reached (offline, no cache) instead of a long traceback.

Every place that takes a model, tokenizer or dataset that may be a hub id loads it inside `hub_errors`, naming
the config key or option the user can point at a local copy instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# What transformers, huggingface_hub, datasets and requests raise when the hub cannot be reached.
_UNREACHABLE_TYPES = ("ConnectionError", "LocalEntryNotFoundError", "OfflineModeIsEnabled", "Timeout")
_UNREACHABLE_TEXT = ("couldn't connect to", "couldn't reach", "offline mode", "name or service not known")


class HubUnreachableError(OSError):
    """A hub id was asked for while the hub cannot be reached, and nothing of it is cached."""


def looks_like_hub_id(name: str) -> bool:
    """'owner/name' that is not a local path."""
    return name.count("/") == 1 and not name.startswith((".", "/", "~")) and not Path(name).exists()


def unreachable(exc: BaseException) -> bool:
    """Whether `exc` (or what caused it) says the hub could not be reached."""
    seen: BaseException | None = exc
    while seen is not None:
        if any(t.__name__ in _UNREACHABLE_TYPES for t in type(seen).__mro__):
            return True
        if any(text in str(seen).lower() for text in _UNREACHABLE_TEXT):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


@contextmanager
def hub_errors(name: str, key: str, what: str = "model") -> Iterator[None]:
    """Loading `name` (given by `key`, e.g. `--model` or `tokenizer.name`): a hub that cannot be reached
    becomes one HubUnreachableError line that names both and says what to do."""
    try:
        yield
    except (OSError, ValueError) as exc:
        if isinstance(exc, HubUnreachableError) or not looks_like_hub_id(str(name)) or not unreachable(exc):
            raise
        raise HubUnreachableError(
            f"{key}: the {what} '{name}' is on the Hugging Face hub, which cannot be reached from here, and it "
            f"is not in the local cache: point {key} at a local copy (a folder), or run once online to cache it"
        ) from None
