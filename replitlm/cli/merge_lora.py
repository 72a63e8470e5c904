#!/usr/bin/env python
"""Merge a LoRA adapter into its base model and write a plain Hugging Face folder (weights, config, tokenizer).

    python scripts/merge_lora.py --adapter runs/lora-quickstart/adapter --out runs/lora-quickstart/merged
    python scripts/merge_lora.py --base replit/replit-code-v1-3b --adapter my-adapter --out merged --dtype bfloat16

The base defaults to the one recorded in the adapter (adapter_config.json: base_model_name_or_path). The
merged weights are W + (alpha / r) B A for every adapted matrix; the result needs neither peft nor the adapter
and loads with `ReplitLMForCausalLM.from_pretrained` and transformers' own MPT. The tokenizer comes from the
adapter folder when it holds one, else from the base.
"""

from __future__ import annotations

import sys
from pathlib import Path

from replitlm.cli import fail, parser
from replitlm.dtypes import DTYPE_NAMES, torch_dtype


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__)
    p.add_argument("--adapter", required=True, help="the PEFT adapter folder (adapter_config.json, ...)")
    p.add_argument("--base", help="base model folder or hub id (default: the adapter's recorded base)")
    p.add_argument("--out", required=True, help="the merged HF folder to write (replaced if it exists)")
    p.add_argument("--dtype", choices=DTYPE_NAMES, default="float32", help="output weights dtype")
    args = p.parse_args(argv)
    import torch

    from replitlm.checkpoint import CheckpointError
    from replitlm.export import save_pretrained_atomic
    from replitlm.hub import hub_errors
    from replitlm.lora import adapter_base, merge_adapter
    from replitlm.model import ReplitLMForCausalLM
    from replitlm.tokenizer import load_tokenizer

    try:
        base = args.base or adapter_base(args.adapter)
        if base is None:
            raise CheckpointError(f"{args.adapter}: the adapter does not record its base model; pass --base")
        # Merge in fp32 (exact sums), then cast: a bf16 merge would round twice.
        with hub_errors(base, "--base"):
            model = ReplitLMForCausalLM.from_pretrained(base, dtype=torch.float32)
        merged = merge_adapter(model, args.adapter)
        has_tokenizer = Path(args.adapter, "spiece.model").is_file()
        tokenizer = load_tokenizer(args.adapter if has_tokenizer else base)
        out = save_pretrained_atomic(
            merged.config, merged.state_dict(), args.out, torch_dtype(args.dtype), tokenizer=tokenizer
        )
    except (CheckpointError, OSError, ValueError) as exc:
        return fail(str(exc))
    print(f"merged {args.adapter} into {base}: wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
