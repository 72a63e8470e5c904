#!/usr/bin/env python
"""Complete code with a ReplitLM model, streaming tokens to the terminal.

python scripts/generate.py replit/replit-code-v1-3b --prompt "def fibonacci(n):"
python scripts/generate.py runs/quickstart/hf --prompt-file prompt.py --greedy --max-new-tokens 200
python scripts/generate.py runs/quickstart/hf --adapter runs/lora-quickstart/adapter --prompt "..."
python scripts/generate.py replit/replit-code-v1-3b --load-in 8bit --prompt "def fib(n):"   # CUDA + bitsandbytes
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from replitlm.cli import fail, parser
from replitlm.dtypes import DTYPE_NAMES, torch_dtype


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = parser(__doc__)
    p.add_argument("model", help="model folder or hub id (e.g. replit/replit-code-v1-3b)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--prompt", help="the code to complete")
    src.add_argument("--prompt-file", type=Path, help="read the prompt from this file")
    p.add_argument("--adapter", help="a PEFT (LoRA) adapter folder to apply to the model")
    p.add_argument(
        "--load-in", choices=["8bit", "4bit"], help="quantize the weights while loading (bitsandbytes, CUDA)"
    )
    p.add_argument("--tokenizer", help="tokenizer folder, hub id or .model file (default: the model's)")
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--greedy", action="store_true", help="greedy decoding instead of sampling")
    p.add_argument("--temperature", type=float, default=0.2)
    p.add_argument("--top-p", type=float, default=0.95)
    p.add_argument("--top-k", type=int, default=4)
    p.add_argument(
        "--stop", action="append", default=None, help="stop sequence (repeatable; default: the model card's)"
    )
    p.add_argument("--no-stop", action="store_true", help="generate until EOS or --max-new-tokens")
    p.add_argument("--no-cache", action="store_true", help="recompute the full sequence each step")
    p.add_argument("--attn-impl", choices=["torch", "flex", "flash", "triton"], default=None)
    p.add_argument(
        "--dtype", choices=DTYPE_NAMES, default=None, help="default: bfloat16 on CUDA, else float32"
    )
    p.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-stream", action="store_true", help="print only the final completion")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    from replitlm.checkpoint import CheckpointError
    from replitlm.generation import DEFAULT_STOP_SEQUENCES, SamplingConfig, StopAwareStreamer, generate_code
    from replitlm.hub import HubUnreachableError, hub_errors
    from replitlm.lora import load_for_inference
    from replitlm.tokenizer import load_tokenizer

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch_dtype(args.dtype or ("bfloat16" if device.startswith("cuda") else "float32"))
    if args.prompt_file is not None and not args.prompt_file.is_file():
        return fail(f"--prompt-file {args.prompt_file} does not exist")
    prompt = args.prompt if args.prompt is not None else args.prompt_file.read_text(encoding="utf-8")
    try:
        sampling = SamplingConfig(
            max_new_tokens=args.max_new_tokens,
            do_sample=not args.greedy,
            temperature=args.temperature,
            top_p=args.top_p,
            top_k=args.top_k,
            stop_sequences=() if args.no_stop else tuple(args.stop or DEFAULT_STOP_SEQUENCES),
            use_cache=not args.no_cache,
        )
    except ValueError as e:
        return fail(str(e))
    torch.manual_seed(args.seed)
    try:
        with hub_errors(
            args.tokenizer or args.model, "--tokenizer" if args.tokenizer else "MODEL", "tokenizer"
        ):
            tokenizer = load_tokenizer(args.tokenizer or args.model)
        with hub_errors(args.model, "MODEL"):
            model = load_for_inference(args.model, args.adapter, args.load_in, dtype, device, args.attn_impl)
    except (CheckpointError, HubUnreachableError, RuntimeError, ImportError) as e:
        return fail(str(e))
    streamer = None if args.no_stream else StopAwareStreamer(tokenizer, sampling.stop_sequences)
    if streamer is not None:
        sys.stdout.write(prompt)
        sys.stdout.flush()
    (completion,) = generate_code(model, tokenizer, [prompt], sampling, streamer=streamer)
    if streamer is None:
        print(prompt + completion)
    return 0


if __name__ == "__main__":
    sys.exit(main())
