"""ReplitLMTokenizer against raw SentencePiece and the behaviour of replit's published tokenizer."""

from __future__ import annotations

import pickle

import pytest
import sentencepiece as spm
from transformers import AutoTokenizer

from replitlm import ReplitLMTokenizer, load_tokenizer
from tests.conftest import STDLIB

ROUND_TRIPS = [
    "",
    "def f(x):\n\treturn x\n",
    "\t\t\tindented with tabs",
    " " * 40 + "forty spaces, more than the longest space piece",
    "   leading and trailing   ",
    "windows\r\nline\r\nendings\r\n",
    "vertical\vtab and form\ffeed",
    "many\n\n\n\n\nnewlines",
    "café, naïve, 中文注释, 日本語",
    r"C:\path\to\file and '\n' escapes",
    "<extra_id_0> sentinel",
]
LOSSY = [
    ("emoji 🙂", "emoji  ⁇ "),  # not in the vocabulary, no byte fallback
    ("ﬁle", "file"),  # NFKC
    ("x²", "x2"),  # NFKC
]


def stdlib_sources() -> list[str]:
    texts = []
    for path in sorted(STDLIB.rglob("*.py")):
        if "site-packages" in path.parts:
            continue
        try:
            texts.append(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, OSError):
            continue  # a few test fixtures are deliberately not UTF-8
    return texts


def test_ids_equal_raw_sentencepiece_on_the_stdlib(tokenizer: ReplitLMTokenizer, spiece_path) -> None:
    sp = spm.SentencePieceProcessor(model_file=str(spiece_path))
    texts = stdlib_sources()
    assert len(texts) > 1000
    raw = sp.encode(texts)
    round_trips = [i for i, (ids, text) in enumerate(zip(raw, texts, strict=True)) if sp.decode(ids) == text]
    assert len(round_trips) / len(texts) > 0.95
    for i in round_trips:
        if "<|" in texts[i]:  # literal special-token strings are parsed by the HF class only (tested below)
            continue
        assert tokenizer(texts[i])["input_ids"] == raw[i], f"file #{i} differs"
    assert tokenizer.encode_batch([texts[i] for i in round_trips]) == [raw[i] for i in round_trips]


@pytest.mark.parametrize("text", ROUND_TRIPS)
def test_round_trip(tokenizer: ReplitLMTokenizer, text: str) -> None:
    ids = tokenizer(text)["input_ids"]
    assert tokenizer.decode(ids) == text


@pytest.mark.parametrize(("text", "decoded"), LOSSY)
def test_lossy_cases_behave_like_the_reference(tokenizer: ReplitLMTokenizer, text: str, decoded: str) -> None:
    assert tokenizer.decode(tokenizer(text)["input_ids"]) == decoded


def test_special_tokens_and_nothing_added(tokenizer: ReplitLMTokenizer) -> None:
    assert (tokenizer.unk_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id) == (0, 1, 2)
    assert tokenizer.bos_token is None and tokenizer.vocab_size == 32768 and len(tokenizer) == 32768
    assert tokenizer("abc")["input_ids"] == [5903]
    assert tokenizer.convert_ids_to_tokens([3, 33, 43, 42, 147]) == ["▁" * 32, "▁▁", "\n", "\n\n", "▁"]
    assert tokenizer("a<|endoftext|>b")["input_ids"] == [174, 1, 215]
    assert 1 not in tokenizer.encode_batch(["a<|endoftext|>b"])[0]  # bulk path: literal text in code
    assert tokenizer("<extra_id_3>")["input_ids"] == tokenizer.encode_batch(["<extra_id_3>"])[0] == [50]


def test_decode_rules(tokenizer: ReplitLMTokenizer) -> None:
    hello = tokenizer("hello")["input_ids"]
    assert tokenizer.decode([*hello, 1, 2]) == "hello"  # control tokens decode to nothing
    assert tokenizer.decode([*hello, 0]) == "hello ⁇ "
    assert tokenizer.decode([*hello, 0], skip_special_tokens=True) == "hello"
    assert tokenizer.decode(tokenizer("x = 1 ,y")["input_ids"]) == "x = 1 ,y"  # no clean-up of spaces
    assert tokenizer.decode(tokenizer("  \n")["input_ids"]) == "  \n"  # no strip


def test_padding_sides(tokenizer: ReplitLMTokenizer) -> None:
    assert tokenizer(["a", "abc def"], padding=True)["input_ids"][0] == [174, 2, 2]
    tokenizer.padding_side = "left"
    try:
        batch = tokenizer(["a", "abc def"], padding=True)
        assert batch["input_ids"][0] == [2, 2, 174] and batch["attention_mask"][0] == [0, 0, 1]
    finally:
        tokenizer.padding_side = "right"


def test_save_load_and_auto_tokenizer(tokenizer: ReplitLMTokenizer, tmp_path) -> None:
    tokenizer.save_pretrained(tmp_path)
    assert (tmp_path / "spiece.model").is_file()
    for loaded in (ReplitLMTokenizer.from_pretrained(tmp_path), AutoTokenizer.from_pretrained(tmp_path)):
        assert type(loaded) is ReplitLMTokenizer
        assert loaded("def f(): pass")["input_ids"] == tokenizer("def f(): pass")["input_ids"]
        assert loaded.clean_up_tokenization_spaces is False and loaded.eos_token == "<|endoftext|>"


def test_load_tokenizer_from_model_file_and_pickle(spiece_path) -> None:
    tok = load_tokenizer(spiece_path)
    clone = pickle.loads(pickle.dumps(tok))  # data-prep workers receive the tokenizer pickled
    assert clone.encode_batch(["import os"]) == tok.encode_batch(["import os"])


def test_bad_tokenizer_files_are_named(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match=r"missing\.model"):
        load_tokenizer(tmp_path / "missing.model")
    bogus = tmp_path / "bogus.model"
    bogus.write_text("this is not a sentencepiece model")
    with pytest.raises(ValueError, match=r"bogus\.model is not a SentencePiece model"):
        load_tokenizer(bogus)
