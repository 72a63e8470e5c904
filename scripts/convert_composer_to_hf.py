#!/usr/bin/env python
"""Convert a Composer checkpoint into a Hugging Face folder (or a PEFT adapter folder).

The same command as `replitlm-export`; its code and `--help` are in replitlm/cli/export.py.
"""

import sys

from replitlm.cli.export import main

if __name__ == "__main__":
    sys.exit(main())
