#!/usr/bin/env python
"""Evaluate a code model: pass@k on HumanEval, MBPP, HumanEval-X with sandboxed execution, or perplexity.

The same command as `replitlm-eval`; its code and `--help` are in replitlm/cli/eval.py.
"""

import sys

from replitlm.cli.eval import main

if __name__ == "__main__":
    sys.exit(main())
