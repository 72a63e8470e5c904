#!/usr/bin/env python
"""The model demo (`make quickstart` until the training job lands): build a tiny random ReplitLM, save it
in the replit layout, load it back with our class and with transformers' built-in MPT, compare their logits,
and sample a completion with the real tokenizer.

    python scripts/demo.py [--out runs/demo] [--tokenizer ../shared/replit/spiece.model]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM

from replitlm import ReplitLMForCausalLM, config_for_size, load_tokenizer
from replitlm.generation import SamplingConfig, generate_code

DEFAULT_TOKENIZER = Path(__file__).resolve().parents[2] / "shared" / "replit" / "spiece.model"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("runs/demo"))
    p.add_argument("--tokenizer", default=str(DEFAULT_TOKENIZER), help="folder, hub id or .model file")
    args = p.parse_args()

    tokenizer = load_tokenizer(args.tokenizer)
    torch.manual_seed(0)
    model = ReplitLMForCausalLM(config_for_size("tiny", vocab_size=tokenizer.vocab_size)).eval()
    n_params = sum(p.numel() for p in model.parameters())
    print(f"built a tiny ReplitLM: {n_params / 1e6:.1f}M parameters, {model.config.n_layers} layers")

    model.save_pretrained(args.out)
    tokenizer.save_pretrained(args.out)
    print(f"saved to {args.out}/ ({', '.join(sorted(p.name for p in args.out.iterdir()))})")

    ours = ReplitLMForCausalLM.from_pretrained(args.out).eval()
    builtin = AutoModelForCausalLM.from_pretrained(args.out).eval()
    ids = tokenizer("def fibonacci(n):\n", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        diff = (ours(ids).logits - builtin(ids).logits).abs().max().item()
    print(f"max |logit difference| vs transformers' built-in {type(builtin).__name__}: {diff:.2e}")

    sampling = SamplingConfig(max_new_tokens=24, stop_sequences=())
    (completion,) = generate_code(ours, tokenizer, ["def fibonacci(n):\n"], sampling)
    print("a random model's completion of 'def fibonacci(n):':", repr(completion))
    return 0 if diff < 1e-4 else 1


if __name__ == "__main__":
    sys.exit(main())
