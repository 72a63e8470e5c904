"""Post-import hooks: run a function once a given module has been executed, without importing it ourselves.

`import replitlm` must stay cheap (data-prep workers, `--help`), yet `AutoTokenizer.from_pretrained` must know
our tokenizer whenever transformers is used after it. So the registration waits for transformers' own
`tokenization_auto` module to load, whoever imports it, and runs right after it.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
from collections.abc import Callable, Sequence
from types import ModuleType


def call_after_import(module_name: str, action: Callable[[], None]) -> None:
    """Call `action()` now if `module_name` is loaded, else right after it first finishes loading."""
    if module_name in sys.modules:
        action()
    else:
        sys.meta_path.insert(0, _Hook(module_name, action))


class _Hook(importlib.abc.MetaPathFinder):
    def __init__(self, module_name: str, action: Callable[[], None]) -> None:
        self.module_name, self.action = module_name, action

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != self.module_name:
            return None
        sys.meta_path.remove(self)  # fires once; and the lookup below must not find this hook again
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def exec_then_act(module: ModuleType) -> None:
            exec_module(module)
            self.action()

        spec.loader.exec_module = exec_then_act  # type: ignore[method-assign]
        return spec
