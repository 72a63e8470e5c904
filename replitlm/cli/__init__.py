"""The command-line entry points: `replitlm-train`, `replitlm-prep`, ... (see pyproject's [project.scripts]).

Each module's `main(argv=None) -> int` is the whole command; the files under train/, data_prep/, eval/ and
scripts/ only call it. Imports of torch and transformers stay inside `main`, after argument parsing, so that
`--help` and argument errors answer at once.
"""

from __future__ import annotations

import argparse
import sys

USAGE_ERROR = 2  # the exit status of a bad argument, input file or config (argparse's own)


def fail(message: str) -> int:
    """Print a one-line error for the user and return the exit status of a usage error."""
    print(f"error: {message}", file=sys.stderr)
    return USAGE_ERROR


def parser(doc: str | None, **kwargs: object) -> argparse.ArgumentParser:
    """A command's parser whose --help shows its module docstring as written (examples included)."""
    return argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter, **kwargs
    )
