#!/usr/bin/env python
"""Train a SentencePiece Unigram tokenizer on a code corpus, with replit-code-v1-3b's conventions.

    python data_prep/train_tokenizer.py --input ~/src --out tokenizers/mycode --vocab-size 32768

The output folder loads with `ReplitLMTokenizer.from_pretrained(out)` and is a valid `--tokenizer` for
convert_code_dataset.py. Inputs are read as by convert_code_dataset.py (folders, .jsonl(.gz), .parquet,
datasets); only decodable, non-empty files are used, up to --max-mb of text.
"""

from __future__ import annotations

import sys

from replitlm.cli import fail, parser
from replitlm.data.sources import InputError
from replitlm.data.tokenizer_training import corpus_texts, train_tokenizer


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__)
    p.add_argument(
        "--input", nargs="+", required=True, help="folders, .jsonl(.gz)/.parquet files or saved datasets"
    )
    p.add_argument("--out", required=True, help="output folder (spiece.model + tokenizer_config.json)")
    p.add_argument(
        "--vocab-size", type=int, default=32768, help="pieces in the vocabulary (default 32768, as replit)"
    )
    p.add_argument("--max-mb", type=float, default=500, help="MB of text to train on at most (default 500)")
    p.add_argument("--threads", type=int, default=2, help="SentencePiece trainer threads (default 2)")
    args = p.parse_args(argv)
    try:
        texts = corpus_texts(args.input, int(args.max_mb * 1e6))
        out = train_tokenizer(texts, args.out, args.vocab_size, args.threads)
    except (InputError, ValueError) as e:
        return fail(str(e))
    print(f"wrote {out}/ (spiece.model, {args.vocab_size} pieces)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
