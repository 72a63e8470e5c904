"""Config dataclass fields that carry their command-line option, so that a command's argparse options come
from the config itself: each default is written once, on the field, and `--help` shows it from there.

    max_seq_len: int = field(default=2048, metadata=cli("tokens per packed sample", group="packing"))

`add_options(parser, Config)` adds `--max-seq-len` (type from the default, "(default 2048)" in its help);
`option_values(Config, args)` gives the fields back by name. A bool field is a switch that flips its
default: `near_dedup: bool = True` with flag="--no-near-dedup".
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import MISSING, Field, dataclass, fields
from typing import Any


@dataclass(frozen=True)
class CliOption:
    help: str
    group: str = ""
    flag: str | None = None  # default: --field-name
    required: bool = False
    nargs: str | None = None
    parse: Callable[[str], Any] | None = None  # the argument's text -> the field's value
    show: Callable[[Any], str] | None = None  # the default -> its text in --help


def cli(help: str, **kwargs: Any) -> dict[str, CliOption]:
    """Field metadata: the field is also a command-line option."""
    return {"cli": CliOption(help, **kwargs)}


def default_of(f: Field) -> Any:
    if f.default is not MISSING:
        return f.default
    return f.default_factory() if f.default_factory is not MISSING else None


def add_options(
    parser: argparse.ArgumentParser, cls: type, groups: dict[str, argparse._ArgumentGroup] | None = None
) -> None:
    """An option for every field of `cls` with `cli(...)` metadata, in field order, in its named group."""
    groups = {} if groups is None else groups
    for f in fields(cls):
        opt = f.metadata.get("cli")
        if opt is None:
            continue
        target = parser
        if opt.group:
            target = groups.setdefault(opt.group, parser.add_argument_group(opt.group))
        flag, default = opt.flag or "--" + f.name.replace("_", "-"), default_of(f)
        if isinstance(default, bool):
            target.add_argument(
                flag, dest=f.name, action="store_false" if default else "store_true", help=opt.help
            )
            continue
        metavar = flag.lstrip("-").replace("-", "_").upper()
        kwargs: dict[str, Any] = {"dest": f.name, "help": opt.help, "nargs": opt.nargs, "metavar": metavar}
        if opt.required:
            kwargs["required"] = True
        else:
            kwargs["default"] = default
            if default not in (None, [], {}, ()):
                kwargs["help"] += f" (default: {opt.show(default) if opt.show else default})"
        if opt.parse is not None:
            kwargs["type"] = opt.parse
        elif type(default) in (int, float):
            kwargs["type"] = type(default)
        target.add_argument(flag, **kwargs)


def option_values(cls: type, args: argparse.Namespace) -> dict[str, Any]:
    """The parsed values of `cls`'s command-line fields, by field name."""
    return {f.name: getattr(args, f.name) for f in fields(cls) if "cli" in f.metadata}
