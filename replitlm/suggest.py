"""'did you mean' hints for misspelled keys and choices (configs, YAML options)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def did_you_mean(key: str, valid: Iterable[str]) -> str:
    """ " (did you mean 'x'?)" for the valid name closest to `key`, or "" when none is close."""
    match = difflib.get_close_matches(key, list(valid), n=1, cutoff=0.6)
    return f" (did you mean '{match[0]}'?)" if match else ""
