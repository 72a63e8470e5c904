"""ReplitLM: the replit-code-v1-3b model, tokenizer and tooling for training, fine-tuning and evaluation."""

from replitlm.config import MODEL_SIZES, ReplitLMConfig, config_for_size
from replitlm.model import ReplitLMForCausalLM, ReplitLMModel
from replitlm.tokenizer import ReplitLMTokenizer, load_tokenizer, register_auto_classes

register_auto_classes()

__all__ = [
    "MODEL_SIZES",
    "ReplitLMConfig",
    "ReplitLMForCausalLM",
    "ReplitLMModel",
    "ReplitLMTokenizer",
    "config_for_size",
    "load_tokenizer",
]
