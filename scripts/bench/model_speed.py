#!/usr/bin/env python
"""Our ReplitLM vs transformers' built-in MptForCausalLM with the same weights, on CPU.

Measures, alternating the two models round by round so machine noise hits both alike:
  * a training step (forward + backward + loss) on batch x seq-len tokens;
  * greedy `generate()` with a KV cache filling a seq-len context: a (seq-len - decode-tokens)-token prompt
    then decode-tokens new tokens, timed end to end (prefill included), tokens/s = new tokens / time;
    once for one sequence and once for a batch of --sample-batch sequences (pass@k sampling's shape);
  * the decode steps alone (one token at a time against the cache, batch 1), tokens/s.
It prints tokens/s for each and the ratio ours/built-in (higher is better).

    python scripts/bench/model_speed.py [--d-model 512 --n-layers 8 --seq-len 512 --rounds 5]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from collections.abc import Callable

import torch
from transformers import MptConfig, MptForCausalLM

from replitlm import ReplitLMForCausalLM, config_for_size


def build_pair(args: argparse.Namespace) -> tuple[torch.nn.Module, torch.nn.Module]:
    config = config_for_size(
        "125m",
        d_model=args.d_model,
        n_heads=args.n_heads,
        n_layers=args.n_layers,
        max_seq_len=args.seq_len + args.decode_tokens,
    )
    torch.manual_seed(0)
    ours = ReplitLMForCausalLM(config)
    builtin = MptForCausalLM(MptConfig(**config.to_dict()))
    builtin.load_state_dict(ours.state_dict(), strict=False)
    builtin.tie_weights()
    return ours, builtin


def train_step(model: torch.nn.Module, ids: torch.Tensor) -> Callable[[], None]:
    def run() -> None:
        model.zero_grad(set_to_none=True)
        # no KV cache in a training step, for either model (the built-in would build one by default)
        model(input_ids=ids, labels=ids, use_cache=False).loss.backward()

    return run


def decode(model: torch.nn.Module, prompt: torch.Tensor, n_new: int) -> Callable[[], None]:
    def run() -> None:
        with torch.no_grad():
            out = model.generate(
                prompt,
                attention_mask=torch.ones_like(prompt),
                max_new_tokens=n_new,
                min_new_tokens=n_new,
                do_sample=False,
                use_cache=True,
                pad_token_id=2,
                eos_token_id=None,
            )
        assert out.shape[1] == prompt.shape[1] + n_new

    return run


def decode_steps(model: torch.nn.Module, prompt: torch.Tensor, n_new: int) -> Callable[[], None]:
    """Prefill once (untimed), then time only the single-token steps against the cache."""
    with torch.no_grad():
        first = model(input_ids=prompt, use_cache=True)
    cache_len = prompt.shape[1]

    def run() -> None:
        cache = copy.deepcopy(first.past_key_values)
        token = prompt[:, -1:]
        with torch.no_grad():
            for i in range(n_new):
                mask = torch.ones(prompt.shape[0], cache_len + i + 1, dtype=torch.long)
                out = model(input_ids=token, attention_mask=mask, past_key_values=cache, use_cache=True)
                cache = out.past_key_values
                token = out.logits[:, -1:].argmax(-1)

    return run


def timed(fn: Callable[[], None]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def compare(
    name: str, ours: Callable[[], None], builtin: Callable[[], None], tokens: int, rounds: int
) -> float:
    ours(), builtin()  # warm-up
    t_ours, t_builtin = [], []
    for _ in range(rounds):
        t_ours.append(timed(ours))
        t_builtin.append(timed(builtin))
    a, b = statistics.median(t_ours), statistics.median(t_builtin)
    # each round times the two back to back, so the median of the per-round ratios cancels the machine's
    # drift between rounds better than a ratio of medians
    ratio = statistics.median(tb / ta for ta, tb in zip(t_ours, t_builtin, strict=True))
    print(
        f"{name:<24} ours {tokens / a:>9.0f} tok/s   built-in {tokens / b:>9.0f} tok/s   ratio {ratio:.2f}x"
    )
    return ratio


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--d-model", type=int, default=512)
    p.add_argument("--n-heads", type=int, default=8)
    p.add_argument("--n-layers", type=int, default=8)
    p.add_argument("--seq-len", type=int, default=512)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--decode-tokens", type=int, default=64)
    p.add_argument("--sample-batch", type=int, default=16)
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args()

    ours, builtin = build_pair(args)
    print(
        f"CPU, {torch.get_num_threads()} threads, torch {torch.__version__}; d_model {args.d_model}, "
        f"{args.n_layers} layers, {args.n_heads} heads, vocab 32768, fp32"
    )
    ids = torch.randint(3, 32768, (args.batch, args.seq_len), generator=torch.Generator().manual_seed(0))
    train = compare(
        f"train step b{args.batch}x{args.seq_len}",
        train_step(ours.train(), ids),
        train_step(builtin.train(), ids),
        ids.numel(),
        args.rounds,
    )
    prompt = ids[:1, : args.seq_len - args.decode_tokens]
    gen = compare(
        f"generate {prompt.shape[1]}+{args.decode_tokens} tok",
        decode(ours.eval(), prompt, args.decode_tokens),
        decode(builtin.eval(), prompt, args.decode_tokens),
        args.decode_tokens,
        args.rounds,
    )
    batch_prompt = ids[:1, : args.seq_len - args.decode_tokens].repeat(args.sample_batch, 1)
    batched = compare(
        f"generate x{args.sample_batch} {prompt.shape[1]}+{args.decode_tokens}",
        decode(ours, batch_prompt, args.decode_tokens),
        decode(builtin, batch_prompt, args.decode_tokens),
        args.decode_tokens * args.sample_batch,
        args.rounds,
    )
    steps = compare(
        "decode steps only",
        decode_steps(ours, prompt, args.decode_tokens),
        decode_steps(builtin, prompt, args.decode_tokens),
        args.decode_tokens,
        args.rounds,
    )
    print(
        f"ratios (ours / built-in, higher is better): training {train:.2f}x, "
        f"generate {gen:.2f}x, batched generate {batched:.2f}x, decode steps {steps:.2f}x"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
