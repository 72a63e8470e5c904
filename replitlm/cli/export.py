#!/usr/bin/env python
"""Convert a Composer checkpoint from train/train.py into a Hugging Face folder (weights, config, tokenizer).

    python scripts/convert_composer_to_hf.py runs/quickstart/checkpoints/latest-rank0.pt runs/quickstart/hf-latest
    python scripts/convert_composer_to_hf.py checkpoints/replit-3b/ep0-ba2000 out/replit-3b --dtype bfloat16

CHECKPOINT is a full checkpoint file (`*.pt`) or a sharded checkpoint folder (FSDP `state_dict_type: sharded`,
holding `.metadata` and `__*_*.distcp`). The model config and the tokenizer are stored inside every
checkpoint, so nothing else is needed. The output loads with `ReplitLMForCausalLM.from_pretrained` and with
transformers' own `AutoModelForCausalLM`. The checkpoint of a LoRA run (which holds only the adapter) becomes
a PEFT adapter folder (adapter_config.json + adapter_model.safetensors); see scripts/merge_lora.py.

Composer checkpoints are Python pickles: convert only checkpoints you trust.
"""

from __future__ import annotations

import sys

from replitlm.cli import fail, parser
from replitlm.dtypes import DTYPE_NAMES, torch_dtype


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__)
    p.add_argument("checkpoint", help="a Composer checkpoint file or sharded checkpoint folder")
    p.add_argument("out", help="the HF folder to write (replaced if it exists)")
    p.add_argument("--dtype", choices=DTYPE_NAMES, default="float32", help="weights dtype (default float32)")
    args = p.parse_args(argv)
    from replitlm.checkpoint import CheckpointError
    from replitlm.export import composer_to_hf

    try:
        out = composer_to_hf(args.checkpoint, args.out, torch_dtype(args.dtype))
    except CheckpointError as exc:
        return fail(str(exc))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
