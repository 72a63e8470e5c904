#!/usr/bin/env python
"""Convert instruction data to prompt/response records for fine-tuning (MDS folder or JSONL file).

    python data_prep/convert_instruct_dataset.py --input code_alpaca.json --out data/alpaca-mds
    python data_prep/convert_instruct_dataset.py --input pairs.jsonl --out data/pairs.jsonl --strict

Inputs: Alpaca-style records (instruction, optional input, output) or prompt/response records, as a .json
list, .jsonl(.gz), a `datasets` folder or a hub id. The prompt template is configurable; `{instruction}` and
`{input}` are filled in. Bad records are listed with their line numbers and skipped (--strict: stop).
"""

from __future__ import annotations

import sys

from replitlm.cli import fail, parser
from replitlm.data.instruct import (
    TEMPLATE_NO_INPUT,
    TEMPLATE_WITH_INPUT,
    InstructError,
    PromptTemplate,
    convert,
)


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__)
    p.add_argument(
        "--input", nargs="+", required=True, help=".json/.jsonl(.gz) files, dataset folders or hub ids"
    )
    p.add_argument("--out", required=True, help="a .jsonl file, or a folder for MDS shards")
    p.add_argument(
        "--template", default=TEMPLATE_WITH_INPUT, help="prompt template for records with an input"
    )
    p.add_argument(
        "--template-no-input", default=TEMPLATE_NO_INPUT, help="prompt template for records without one"
    )
    p.add_argument("--split", default="train", help="split of dataset inputs (default train)")
    p.add_argument(
        "--strict", action="store_true", help="stop at the first bad record instead of skipping it"
    )
    args = p.parse_args(argv)
    unescape = lambda s: s.encode().decode("unicode_escape")  # noqa: E731 - lets "\n" be typed in a shell
    try:
        template = PromptTemplate(unescape(args.template), unescape(args.template_no_input))
        report = convert(args.input, args.out, template, strict=args.strict, split=args.split)
    except (InstructError, OSError) as e:
        return fail(str(e))
    for problem in report.bad[:20]:
        print(f"skipped {problem}", file=sys.stderr)
    if len(report.bad) > 20:
        print(f"... and {len(report.bad) - 20} more bad records", file=sys.stderr)
    print(f"wrote {report.written} records to {args.out} ({len(report.bad)} bad records skipped)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
