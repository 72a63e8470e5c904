#!/usr/bin/env python
"""Turn source code into tokenized, packed MDS shards for training (train/ and val/ plus stats.json).

    python data_prep/convert_code_dataset.py --input ~/src/myrepo --out data/myrepo \\
        --tokenizer replit/replit-code-v1-3b
    python data_prep/convert_code_dataset.py --input bigcode/the-stack-dedup --data-dir data/python \\
        --out s3://bucket/stack-python --tokenizer spiece.model --workers 16

Inputs: folders of source files (language from the extension), .jsonl/.jsonl.gz/.parquet files and
`datasets` folders in the-stack-dedup schema (content, lang, licenses, ...), or hub dataset ids (streamed;
prefix a local dataset folder with hf: to load it the same way). Every filter can be switched off; every
dropped file is counted by reason in the printed report and stats.json.
"""

from __future__ import annotations

import argparse
import sys

from replitlm.cli import fail, parser
from replitlm.data.filters import QualityFilter
from replitlm.data.pipeline import (
    DEDUP,
    ENGINE,
    IO,
    PACK,
    QUALITY,
    SELECT,
    PipelineConfig,
    format_report,
    run,
)
from replitlm.data.sources import InputError
from replitlm.fields import add_options, option_values


def build_parser() -> argparse.ArgumentParser:
    """The options are PipelineConfig's and QualityFilter's fields (their defaults and help live there)."""
    p = parser(__doc__)
    groups = {name: p.add_argument_group(name) for name in (IO, PACK, SELECT, QUALITY, DEDUP, ENGINE)}
    groups[SELECT].add_argument(
        "--no-license-filter", action="store_true", help="keep files whatever their licenses"
    )
    add_options(p, PipelineConfig, groups)
    add_options(p, QualityFilter, groups)
    return p


def config_from_args(args: argparse.Namespace) -> PipelineConfig:
    values = option_values(PipelineConfig, args)
    if args.no_license_filter:
        values["licenses"] = None
    return PipelineConfig(**values, quality=QualityFilter(**option_values(QualityFilter, args)))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = config_from_args(args)
        if config.engine == "spark":
            from replitlm.data.spark_engine import SparkJobError, run_spark  # imports pyspark: only here

            try:
                report = run_spark(config)
            except SparkJobError as e:
                return fail(f"{e}; nothing was published at {args.out}")
        else:
            report = run(config)
    except (InputError, ValueError, FileExistsError, FileNotFoundError) as e:
        return fail(str(e))
    except OSError as e:  # a full disk, a read-only folder: nothing is published, a rerun continues
        return fail(
            f"writing {args.out}: {e.strerror or e}; nothing was published there and the partial "
            "output was removed: fix this and rerun the same command"
        )
    print(format_report(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
