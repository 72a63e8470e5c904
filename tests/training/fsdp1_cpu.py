"""Composer's FSDP1 path on CPUs, for tests only: `enable()` before the Trainer is built.

Composer 0.32.1 wraps models in torch's FullyShardedDataParallel, which runs on CPUs over gloo, but names
the CUDA device in two places: `device_id=torch.cuda.current_device()`, and for modules built on the meta
device `module.to_empty(device=f"cuda:{torch.cuda.current_device()}")`. Without CUDA both raise. This routes
both to the CPU; torch's check that `sync_module_states` broadcasts from a GPU is skipped (gloo broadcasts
CPU tensors). And a full state dict "offloaded to the CPU" from parameters already there would alias the
unsharded storage that FSDP frees on exit (a segfault when it is cloned), so offloading is turned off. The rest
(wrapping policy, sync_module_states, state dicts, checkpoints) is Composer's and torch's own code, as users
run it on GPUs. A process that applies these never uses CUDA afterwards.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch.distributed.fsdp import _init_utils, _state_dict_utils

ENV = "REPLITLM_TEST_FSDP1_ON_CPU"  # set: dist_driver.py enables the shim in each launched process


def patches() -> list[tuple[Any, str, Any]]:
    """(object, attribute, replacement) triples; `enable` sets them, a test may set them with monkeypatch."""
    to_empty = torch.nn.Module.to_empty
    unshard = _state_dict_utils._unshard_fsdp_state_params

    def to_empty_on_cpu(self: torch.nn.Module, *, device: object, recurse: bool = True) -> torch.nn.Module:
        # Composer materialises meta modules on f"cuda:{current_device()}" = "cuda:cpu" here
        target = "cpu" if str(device).startswith("cuda") else device
        return to_empty(self, device=target, recurse=recurse)

    def unshard_in_place(*args: object, **kwargs: object) -> object:
        return unshard(*args, **{**kwargs, "offload_to_cpu": False})  # the parameters are on the CPU already

    return [
        (torch.cuda, "current_device", lambda: torch.device("cpu")),  # FSDP1's device_id: the CPU
        (torch.nn.Module, "to_empty", to_empty_on_cpu),
        (_state_dict_utils, "_unshard_fsdp_state_params", unshard_in_place),
        (_init_utils, "_check_module_states_for_sync_module_states", lambda states: None),
    ]


def enable() -> None:
    if torch.cuda.is_available():
        return
    os.environ.pop("FSDP_VERSION", None)  # FSDP1 is Composer's default
    for obj, name, value in patches():
        setattr(obj, name, value)
