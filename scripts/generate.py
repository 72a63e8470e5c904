#!/usr/bin/env python
"""Complete code with a ReplitLM model, streaming tokens to the terminal.

The same command as `replitlm-generate`; its code and `--help` are in replitlm/cli/generate.py.
"""

import sys

from replitlm.cli.generate import main

if __name__ == "__main__":
    sys.exit(main())
