#!/usr/bin/env python
"""Source code → tokenized, packed MDS shards (train/, val/, stats.json).

The same command as `replitlm-prep`; its code and `--help` are in replitlm/cli/prep.py.
"""

import sys

from replitlm.cli.prep import main

if __name__ == "__main__":
    sys.exit(main())
