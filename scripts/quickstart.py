#!/usr/bin/env python
"""`make quickstart`: the whole job on a built-in default, on a CPU, offline, in a few minutes.

The same command as `replitlm-quickstart`; its code and `--help` are in replitlm/cli/quickstart.py.
"""

import sys

from replitlm.cli.quickstart import main

if __name__ == "__main__":
    sys.exit(main())
