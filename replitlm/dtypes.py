"""Weight dtypes by the names that configs and command lines use: one map for all of them.

torch is imported on first use, so the commands' `--help` and argument checks stay fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

DTYPE_NAMES = ("float32", "bfloat16", "float16")


def torch_dtype(name: str) -> torch.dtype:
    """The torch dtype called `name` (one of DTYPE_NAMES)."""
    import torch

    if name not in DTYPE_NAMES:
        raise ValueError(f"dtype '{name}' is not one of {', '.join(DTYPE_NAMES)}")
    return getattr(torch, name)
