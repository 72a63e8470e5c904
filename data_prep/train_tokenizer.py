#!/usr/bin/env python
"""Train a SentencePiece tokenizer on a code corpus, with replit-code-v1-3b's conventions.

The same command as `replitlm-tokenizer`; its code and `--help` are in replitlm/cli/tokenizer.py.
"""

import sys

from replitlm.cli.tokenizer import main

if __name__ == "__main__":
    sys.exit(main())
