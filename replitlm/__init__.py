"""ReplitLM: the replit-code-v1-3b model, tokenizer and tooling for training, fine-tuning and evaluation.

Importing the package is cheap: the names below load their modules (torch, transformers) on first use, so
data preparation and every command's `--help` never pay for them. `AutoTokenizer` learns our tokenizer as
soon as transformers loads its auto classes, whether before or after this import.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from replitlm._after_import import call_after_import

_EXPORTS = {
    "MODEL_SIZES": "replitlm.config",
    "ReplitLMConfig": "replitlm.config",
    "config_for_size": "replitlm.config",
    "ReplitLMForCausalLM": "replitlm.model",
    "ReplitLMModel": "replitlm.model",
    "ReplitLMTokenizer": "replitlm.tokenizer",
    "load_tokenizer": "replitlm.tokenizer",
}
__all__ = [
    "MODEL_SIZES",
    "ReplitLMConfig",
    "ReplitLMForCausalLM",
    "ReplitLMModel",
    "ReplitLMTokenizer",
    "config_for_size",
    "load_tokenizer",
]

if TYPE_CHECKING:
    from replitlm.config import MODEL_SIZES, ReplitLMConfig, config_for_size
    from replitlm.model import ReplitLMForCausalLM, ReplitLMModel
    from replitlm.tokenizer import ReplitLMTokenizer, load_tokenizer


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'replitlm' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


def _register_auto_classes() -> None:
    # replitlm.tokenizer registers itself as its last statement; when it is the module whose import loaded
    # transformers, import_module gives back the half-loaded module and the registration follows on its own.
    importlib.import_module("replitlm.tokenizer")


call_after_import("transformers.models.auto.tokenization_auto", _register_auto_classes)
