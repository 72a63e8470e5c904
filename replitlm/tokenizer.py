"""ReplitLMTokenizer: replit-code-v1-3b's SentencePiece tokenizer as a transformers (slow) tokenizer.

Behaviour, as the published tokenizer: ids are SentencePiece's; special tokens are <|unk|>=0,
<|endoftext|>=1, <|pad|>=2 and there is no BOS; encoding adds nothing; decoding is SentencePiece's own
(no `.strip()`, control tokens decode to "", <|unk|> to " ⁇ ") and `clean_up_tokenization_spaces` is off.

`encode_batch` is the bulk path for data preparation: raw SentencePiece, multi-threaded, the same ids as
the HF path except that it does not treat the literal text "<|endoftext|>" inside a file as the special token
(which is what a corpus of code wants).

`save_pretrained` also writes `tokenizer.json`, the same tokenizer for the `tokenizers` library (see
replitlm.fast_tokenizer), and names `PreTrainedTokenizerFast` in tokenizer_config.json: stock transformers, vLLM
and TGI load the folder without this package. Once `replitlm` is imported, `AutoTokenizer` still gives
ReplitLMTokenizer for such a folder (tokenizer_config.json says so in OWN_CLASS_KEY).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from transformers import AutoTokenizer, PreTrainedTokenizer
from transformers.models.auto.tokenization_auto import get_tokenizer_config
from transformers.utils import cached_file
from transformers.utils import logging as hf_logging

from replitlm.fast_tokenizer import build_fast_tokenizer
from replitlm.hub import looks_like_hub_id
from replitlm.spiece import OWN_CLASS_KEY, VOCAB_FILE, load_sentencepiece

FAST_TOKENIZER_FILE = "tokenizer.json"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
HUB_ID = "replit/replit-code-v1-3b"
_HUB_KWARGS = ("cache_dir", "force_download", "proxies", "token", "revision", "local_files_only", "subfolder")

logger = hf_logging.get_logger(__name__)


class ReplitLMTokenizer(PreTrainedTokenizer):
    vocab_files_names = {"vocab_file": VOCAB_FILE}
    model_input_names = ["input_ids", "attention_mask"]

    def __init__(
        self,
        vocab_file: str,
        eos_token: str = "<|endoftext|>",
        unk_token: str = "<|unk|>",
        pad_token: str = "<|pad|>",
        bos_token: str | None = None,
        sep_token: str | None = None,
        clean_up_tokenization_spaces: bool = False,
        model_max_length: int = 2048,
        **kwargs: Any,
    ) -> None:
        self.vocab_file = vocab_file
        self.sp_model = load_sentencepiece(vocab_file)
        super().__init__(
            eos_token=eos_token,
            unk_token=unk_token,
            pad_token=pad_token,
            bos_token=bos_token,
            sep_token=sep_token,
            clean_up_tokenization_spaces=clean_up_tokenization_spaces,
            model_max_length=model_max_length,
            **kwargs,
        )

    # -- the four primitives transformers builds on ----------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return self.sp_model.get_piece_size()

    def get_vocab(self) -> dict[str, int]:
        vocab = {self.sp_model.id_to_piece(i): i for i in range(self.vocab_size)}
        vocab.update(self.added_tokens_encoder)
        return vocab

    def _tokenize(self, text: str, **kwargs: Any) -> list[str]:
        return self.sp_model.encode(text, out_type=str)

    def _convert_token_to_id(self, token: str) -> int:
        return self.sp_model.piece_to_id(token)

    def _convert_id_to_token(self, index: int) -> str:
        return self.sp_model.id_to_piece(index)

    def convert_tokens_to_string(self, tokens: list[str]) -> str:
        return self.sp_model.decode(tokens)

    def _decode(
        self,
        token_ids: int | list[int],
        skip_special_tokens: bool = False,
        clean_up_tokenization_spaces: bool | None = None,
        **kwargs: Any,
    ) -> str:
        """SentencePiece decoding of the ids (tokens added after training are spliced in as text)."""
        ids = [token_ids] if isinstance(token_ids, int) else list(token_ids)
        if skip_special_tokens:
            special = set(self.all_special_ids)
            ids = [i for i in ids if i not in special]
        pieces: list[str] = []
        run: list[int] = []
        for i in ids:
            if i < self.vocab_size:
                run.append(i)
                continue
            pieces.append(self.sp_model.decode(run))
            run = []
            pieces.append(self._added_tokens_decoder[i].content)
        pieces.append(self.sp_model.decode(run))
        text = "".join(pieces)
        clean = (
            self.clean_up_tokenization_spaces
            if clean_up_tokenization_spaces is None
            else clean_up_tokenization_spaces
        )
        return self.clean_up_tokenization(text) if clean else text

    @classmethod
    def _from_pretrained(cls, resolved_vocab_files: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        # transformers warns when tokenizer_config.json names another class; for our own folders it names
        # PreTrainedTokenizerFast on purpose (for loaders without replitlm), so that warning is noise here.
        config_file = resolved_vocab_files.get("tokenizer_config_file")
        own = config_file is not None and _read_json(config_file).get(OWN_CLASS_KEY) == cls.__name__
        with _without_warnings("tokenization_utils_base", "is not the same type" if own else None):
            return super()._from_pretrained(resolved_vocab_files, *args, **kwargs)

    def save_pretrained(
        self,
        save_directory: str | os.PathLike[str],
        legacy_format: bool | None = None,
        filename_prefix: str | None = None,
        push_to_hub: bool = False,
        **kwargs: Any,
    ) -> tuple[str, ...]:
        """transformers' files plus tokenizer.json, each moved into `save_directory` once all are written.

        A failure leaves the folder as it was; a SentencePiece model the fast tokenizer cannot reproduce
        (see replitlm.fast_tokenizer.check_convertible) is saved without tokenizer.json, with a warning.
        """
        if push_to_hub:
            raise NotImplementedError("save_pretrained(push_to_hub=True): save to a folder, then upload it")
        fast = self._fast_tokenizer_json()
        prefix = filename_prefix + "-" if filename_prefix else ""
        folder = Path(save_directory)
        folder.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".tokenizer.", dir=folder))
        try:
            super().save_pretrained(str(staging), legacy_format, filename_prefix, **kwargs)
            if fast is not None:
                (staging / (prefix + FAST_TOKENIZER_FILE)).write_text(fast, encoding="utf-8")
                _name_fast_class(staging / (prefix + TOKENIZER_CONFIG_FILE), type(self).__name__)
            written = sorted(p.name for p in staging.iterdir())
            for name in written:
                os.replace(staging / name, folder / name)
            if fast is None:  # a tokenizer.json from an earlier save would not match this tokenizer
                (folder / (prefix + FAST_TOKENIZER_FILE)).unlink(missing_ok=True)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return tuple(str(folder / name) for name in written)

    def _fast_tokenizer_json(self) -> str | None:
        """tokenizer.json for this tokenizer (same ids), or None (warned) if its model cannot be converted."""
        try:
            return build_fast_tokenizer(self.vocab_file, self.added_tokens_decoder).to_str(pretty=True)
        except ValueError as e:
            logger.warning(f"{self.vocab_file}: saving without {FAST_TOKENIZER_FILE} ({e})")
            return None

    def save_vocabulary(self, save_directory: str, filename_prefix: str | None = None) -> tuple[str]:
        if not os.path.isdir(save_directory):
            raise NotADirectoryError(f"save_vocabulary: {save_directory} is not a directory")
        name = (filename_prefix + "-" if filename_prefix else "") + VOCAB_FILE
        out = os.path.join(save_directory, name)
        if os.path.abspath(self.vocab_file) != os.path.abspath(out):
            shutil.copyfile(self.vocab_file, out)
        return (out,)

    # -- bulk path for data preparation ----------------------------------------------------------------
    def encode_batch(self, texts: list[str], num_threads: int = -1) -> list[list[int]]:
        """Token ids for many texts at once (SentencePiece's threaded encoder; no special-token parsing)."""
        return self.sp_model.encode(texts, num_threads=num_threads)

    # The C++ processor does not pickle; multiprocessing workers rebuild it from the file.
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["sp_model"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.sp_model = load_sentencepiece(self.vocab_file)


def load_tokenizer(name_or_path: str | os.PathLike[str], **kwargs: Any) -> ReplitLMTokenizer:
    """The tokenizer from a folder, a hub id (e.g. replit/replit-code-v1-3b) or a bare `.model` file."""
    name = str(name_or_path)
    if name.endswith(".model"):
        return ReplitLMTokenizer(vocab_file=name, **kwargs)
    if looks_like_hub_id(name):
        # Fetch the model file first: from_pretrained would turn an unreachable hub into a missing file.
        cached_file(name, VOCAB_FILE, **{k: v for k, v in kwargs.items() if k in _HUB_KWARGS})
    return ReplitLMTokenizer.from_pretrained(name, **kwargs)


def _read_json(path: str | os.PathLike[str]) -> dict[str, Any]:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _name_fast_class(config_file: Path, own_class: str) -> None:
    """Point stock loaders at PreTrainedTokenizerFast (tokenizer.json) and replitlm at `own_class`."""
    config = _read_json(config_file)
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    config[OWN_CLASS_KEY] = own_class
    config_file.write_text(json.dumps(config, indent=2, sort_keys=True, ensure_ascii=False) + "\n", "utf-8")


@contextmanager
def _without_warnings(module: str, containing: str | None) -> Iterator[None]:
    """Drop log records of transformers.`module` whose message contains `containing` (None: drop nothing)."""
    log = logging.getLogger(f"transformers.{module}")

    def keep(record: logging.LogRecord) -> bool:
        return containing is None or containing not in record.getMessage()

    log.addFilter(keep)
    try:
        yield
    finally:
        log.removeFilter(keep)


def saved_by_replitlm(name_or_path: str | os.PathLike[str], **hub_kwargs: Any) -> bool:
    """Whether a folder or hub id holds a tokenizer that ReplitLMTokenizer.save_pretrained wrote."""
    hub = {k: v for k, v in hub_kwargs.items() if k in _HUB_KWARGS}
    try:
        if get_tokenizer_config(name_or_path, **hub).get(OWN_CLASS_KEY) != ReplitLMTokenizer.__name__:
            return False
        # A folder re-saved by PreTrainedTokenizerFast keeps the key but has no SentencePiece model.
        found = cached_file(name_or_path, VOCAB_FILE, _raise_exceptions_for_missing_entries=False, **hub)
    except (OSError, ValueError):
        return False  # AutoTokenizer reports the problem itself
    return found is not None


def _routing_from_pretrained(stock: Callable[..., Any]) -> Callable[..., Any]:
    """AutoTokenizer.from_pretrained that gives ReplitLMTokenizer for our folders, else does what it did."""

    def from_pretrained(cls: type, name_or_path: Any, *inputs: Any, **kwargs: Any) -> Any:
        if kwargs.get("tokenizer_type") is None and saved_by_replitlm(name_or_path, **kwargs):
            for key in ("use_fast", "trust_remote_code", "config", "tokenizer_type"):
                kwargs.pop(key, None)
            return ReplitLMTokenizer.from_pretrained(name_or_path, *inputs, **kwargs)
        return stock(cls, name_or_path, *inputs, **kwargs)

    from_pretrained.routes_replitlm = True  # type: ignore[attr-defined]
    return from_pretrained


def register_auto_classes() -> None:
    """Let `AutoTokenizer` give ReplitLMTokenizer once `replitlm` is imported.

    Folders saved by this package name PreTrainedTokenizerFast (for loaders without replitlm), which stock
    AutoTokenizer would resolve before any registered class, so its from_pretrained is wrapped to check
    OWN_CLASS_KEY first. Older folders name "ReplitLMTokenizer", which the registration resolves.
    """
    from replitlm.config import ReplitLMConfig

    AutoTokenizer.register(ReplitLMConfig, slow_tokenizer_class=ReplitLMTokenizer, exist_ok=True)
    stock = AutoTokenizer.from_pretrained.__func__
    if not getattr(stock, "routes_replitlm", False):
        AutoTokenizer.from_pretrained = classmethod(_routing_from_pretrained(stock))


# Loading this module is what makes AutoTokenizer route our folders (replitlm/__init__ imports it as soon as
# transformers loads its auto classes).
register_auto_classes()
