"""Train or fine-tune ReplitLM with Composer: `composer train/train.py yamls/finetune.yaml [key=value ...]`.

All logic lives in replitlm.training; see `--help` and the commented YAMLs under yamls/.
"""

import sys

from replitlm.training.run import main

if __name__ == "__main__":
    sys.exit(main())
