"""Composer's FSDP1 path on CPUs, for tests only: `enable()` before the Trainer is built.

Composer 0.32.1 wraps models in torch's FullyShardedDataParallel, which runs on CPUs over gloo, but names
the CUDA device in two places: `device_id=torch.cuda.current_device()`, and for modules built on the meta
device `module.to_empty(device=f"cuda:{torch.cuda.current_device()}")`. Without CUDA both raise. This routes
both to the CPU. And a full state dict "offloaded to the CPU" from parameters already there would alias the
unsharded storage that FSDP frees on exit (a segfault when it is cloned), so offloading is turned off. The rest (wrapping policy, sync_module_states, state dicts, checkpoints) is Composer's and
torch's own code, as users run it on GPUs. A test process that calls it never uses CUDA afterwards.
"""

from __future__ import annotations

import os

import torch

ENV = "REPLITLM_TEST_FSDP1_ON_CPU"  # set: dist_driver.py enables the shim in each launched process


def enable() -> None:
    if torch.cuda.is_available() or getattr(torch.cuda, "_fsdp1_on_cpu", False):
        return
    os.environ.pop("FSDP_VERSION", None)  # FSDP1 is Composer's default
    torch.cuda.current_device = lambda: torch.device("cpu")  # FSDP1's device_id: the CPU
    to_empty = torch.nn.Module.to_empty

    def to_empty_on_cpu(self: torch.nn.Module, *, device: object, recurse: bool = True) -> torch.nn.Module:
        # Composer materialises meta modules on f"cuda:{current_device()}" = "cuda:cpu" here
        target = "cpu" if str(device).startswith("cuda") else device
        return to_empty(self, device=target, recurse=recurse)

    torch.nn.Module.to_empty = to_empty_on_cpu

    from torch.distributed.fsdp import _state_dict_utils

    unshard = _state_dict_utils._unshard_fsdp_state_params

    def unshard_in_place(*args: object, **kwargs: object) -> object:
        return unshard(*args, **{**kwargs, "offload_to_cpu": False})  # the parameters are on the CPU already

    _state_dict_utils._unshard_fsdp_state_params = unshard_in_place
    torch.cuda._fsdp1_on_cpu = True
