#!/usr/bin/env python
"""Train or fine-tune ReplitLM with Composer: `composer train/train.py yamls/finetune.yaml [key=value ...]`.

The same command as `replitlm-train`; its code and `--help` are in replitlm/cli/train.py.
"""

import sys

from replitlm.cli.train import main

if __name__ == "__main__":
    sys.exit(main())
