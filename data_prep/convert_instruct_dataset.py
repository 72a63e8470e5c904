#!/usr/bin/env python
"""Instruction data → prompt/response records for fine-tuning (MDS folder or JSONL file).

The same command as `replitlm-prep-instruct`; its code and `--help` are in replitlm/cli/prep_instruct.py.
"""

import sys

from replitlm.cli.prep_instruct import main

if __name__ == "__main__":
    sys.exit(main())
