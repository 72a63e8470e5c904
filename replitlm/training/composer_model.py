"""ReplitLM wrapped for Composer: loss, eval metrics, FLOPs per batch (for MFU), FSDP wrapping hints.

Composer's HuggingFaceModel does the plumbing we want for free: it stores the model config and the tokenizer
inside every checkpoint (so `scripts/convert_composer_to_hf.py` needs nothing but the checkpoint), and it
knows PEFT adapters. The loss is the model's own (`labels` in the batch, shifted inside the model).
"""

from __future__ import annotations

from typing import Any

from composer.metrics.nlp import LanguageCrossEntropy, LanguagePerplexity
from composer.models import HuggingFaceModel
from torch import Tensor, nn

from replitlm.checkpoint import CheckpointError
from replitlm.model import Block, ReplitLMForCausalLM


class ComposerReplitLM(HuggingFaceModel):
    def __init__(self, model: ReplitLMForCausalLM | nn.Module, tokenizer: Any = None) -> None:
        super().__init__(
            model,
            tokenizer=tokenizer,
            use_logits=True,
            metrics=[],  # the training loss is logged anyway; a second pass over the logits is not worth it
            eval_metrics=[LanguageCrossEntropy(), LanguagePerplexity()],
            shift_labels=True,
            allow_embedding_resizing=False,
            should_save_peft_only=False,  # state_dict below keeps what trains, modules_to_save included
        )
        base = _replit_model(model)
        # FSDP (1 and 2) wraps each Block; activation checkpointing, when asked for, applies per Block.
        base.fsdp_wrap_fn = _is_block
        base.activation_checkpointing_fn = _is_block
        self.n_params = sum(p.numel() for p in model.parameters())  # counted once: FSDP shards them later

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """With LoRA, only what trains (adapters, modules_to_save): checkpoints stay small, and on resume the
        frozen base comes from model.pretrained_model_name_or_path as it did at the start."""
        full = super().state_dict(*args, **kwargs)
        if not self.using_peft:
            return full
        prefix = kwargs.get("prefix", args[1] if len(args) > 1 else "")
        # FSDP1 and activation checkpointing name parameters through their wrappers; state dict keys do not
        trainable = {plain_name(prefix + name) for name, p in self.named_parameters() if p.requires_grad}
        return {k: v for k, v in full.items() if plain_name(k) in trainable}

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:
        """With LoRA, the checkpoint must hold every trained tensor; the frozen base is not in it (see above)."""
        if not self.using_peft:
            return super().load_state_dict(state_dict, strict=strict, assign=assign)
        result = super().load_state_dict(state_dict, strict=False, assign=assign)
        trainable = {plain_name(n) for n, p in self.named_parameters() if p.requires_grad}
        missing = [k for k in result.missing_keys if plain_name(k) in trainable]
        if strict and (missing or result.unexpected_keys):
            raise CheckpointError(
                "the checkpoint does not fit this LoRA model (another lora config?): missing "
                f"{missing[:4]}, unexpected {result.unexpected_keys[:4]}"
            )
        return result

    def forward(self, batch: dict[str, Any]) -> Any:
        """Training and evaluation never reuse keys and values: no KV cache (at 3B, an 8x2048 eval batch's
        cache alone is ~5 GiB), whatever the config's `use_cache` says for generation."""
        return super().forward({**batch, "use_cache": False})

    def flops_per_batch(self, batch: dict[str, Tensor]) -> float:
        """Training FLOPs (forward + backward = 3x forward) of one batch, for the speed monitor's MFU.

        llm-foundry's formula, so MFU compares with published MPT numbers: matmuls cost 2 FLOPs per parameter
        per token (the tied embedding counted once, as the output head), and attention 2·2·S·d per token per
        layer (QKᵀ and AV over the whole S×S square, although causal attention needs only half of it).
        """
        config = self.config
        batch_size, seq_len = batch["input_ids"].shape
        matmul = 2 * self.n_params * seq_len
        attention = config.n_layers * 2 * 2 * config.d_model * seq_len * seq_len
        return 3 * (matmul + attention) * batch_size


def plain_name(name: str) -> str:
    """A parameter name without the wrappers FSDP1 and activation checkpointing insert."""
    return name.replace("_fsdp_wrapped_module.", "").replace("_checkpoint_wrapped_module.", "")


def _is_block(module: nn.Module) -> bool:
    return isinstance(module, Block)


def _replit_model(model: nn.Module) -> ReplitLMForCausalLM:
    """The ReplitLMForCausalLM inside `model` (itself, or the base of a PEFT wrapper)."""
    for module in model.modules():
        if isinstance(module, ReplitLMForCausalLM):
            return module
    raise TypeError(
        f"expected a ReplitLMForCausalLM (or a PEFT model around one), got {type(model).__name__}"
    )
