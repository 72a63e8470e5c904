#!/usr/bin/env python
"""Merge a LoRA adapter into its base model and save a plain Hugging Face folder.

The same command as `replitlm-merge-lora`; its code and `--help` are in replitlm/cli/merge_lora.py.
"""

import sys

from replitlm.cli.merge_lora import main

if __name__ == "__main__":
    sys.exit(main())
