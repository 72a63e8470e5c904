"""ReplitLMTokenizer against raw SentencePiece and the behaviour of replit's published tokenizer."""

from __future__ import annotations

import json
import logging
import pickle
from pathlib import Path

import pytest
import sentencepiece as spm
from sentencepiece import sentencepiece_model_pb2
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from replitlm import ReplitLMTokenizer, load_tokenizer
from replitlm.tokenizer import OWN_CLASS_KEY
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


@pytest.mark.integration  # a whole corpus
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


def test_save_load_and_auto_tokenizer(tokenizer: ReplitLMTokenizer, tmp_path, caplog) -> None:
    written = tokenizer.save_pretrained(tmp_path)
    assert sorted(Path(p).name for p in written) == sorted(p.name for p in tmp_path.iterdir())
    assert {"spiece.model", "tokenizer.json", "tokenizer_config.json"} <= {p.name for p in tmp_path.iterdir()}
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "PreTrainedTokenizerFast"  # for loaders without replitlm
    assert config[OWN_CLASS_KEY] == "ReplitLMTokenizer"
    with caplog.at_level(logging.WARNING):
        loaded_ours = [ReplitLMTokenizer.from_pretrained(tmp_path), AutoTokenizer.from_pretrained(tmp_path)]
    assert "not the same type" not in caplog.text  # the class named for stock loaders is not a mismatch here
    for loaded in loaded_ours:
        assert type(loaded) is ReplitLMTokenizer
        assert loaded("def f(): pass")["input_ids"] == tokenizer("def f(): pass")["input_ids"]
        assert loaded.clean_up_tokenization_spaces is False and loaded.eos_token == "<|endoftext|>"
    # A folder re-saved by the stock class has no spiece.model: AutoTokenizer gives the stock class for it.
    PreTrainedTokenizerFast.from_pretrained(tmp_path).save_pretrained(tmp_path / "resaved")
    assert type(AutoTokenizer.from_pretrained(tmp_path / "resaved")) is PreTrainedTokenizerFast


@pytest.fixture(scope="module")
def fast_tokenizer(tokenizer: ReplitLMTokenizer, tmp_path_factory) -> PreTrainedTokenizerFast:
    folder = tmp_path_factory.mktemp("fast")
    tokenizer.save_pretrained(folder)
    return PreTrainedTokenizerFast.from_pretrained(folder)


FAST_CASES = [
    *(text for text in ROUND_TRIPS if " " * 33 not in text),  # longer runs: see test_fast_tokenizer_ties
    *(text for text, _ in LOSSY),
    "\t" * 8 + "x\t",  # tabs and newlines are user-defined pieces that nmt_nfkc would turn into spaces
    "\n" * 5 + "\r\n\v\f",
    "\ue000\t\ue0001 \ue0000",  # the marker the fast normalizer protects whitespace with, in the text itself
    "a<|endoftext|>b<|pad|>c<|unk|>",
    "NBSP\u00a0, ideographic\u3000space, zero\u200bwidth, esc\x1b del\x7f, ＦＵＬＬ, x…y",
    "🙂🙂 two unknown characters are one <|unk|>",
    "    return self._x  # indentation",
]


@pytest.mark.parametrize("text", FAST_CASES)
def test_fast_tokenizer_matches_ours(tokenizer, fast_tokenizer, text: str) -> None:
    ids = tokenizer(text)["input_ids"]
    assert fast_tokenizer(text)["input_ids"] == ids
    assert fast_tokenizer.decode(ids) == tokenizer.decode(ids)
    assert fast_tokenizer.decode(ids, skip_special_tokens=True) == tokenizer.decode(
        ids, skip_special_tokens=True
    )


@pytest.mark.parametrize(("char", "longest"), [(" ", 32), ("\t", 8), ("\n", 2)])
def test_fast_tokenizer_ties(tokenizer, fast_tokenizer, char: str, longest: int) -> None:
    """A run longer than the longest piece for it splits into the fewest pieces; when several splits use that
    many, SentencePiece picks one by float32 rounding (which depends on the text before), the fast tokenizer
    always the one with the longest last piece."""
    for n in range(1, 3 * longest + 2):
        text = "x" + char * n + "y"
        ids, fast_ids = tokenizer(text)["input_ids"], fast_tokenizer(text)["input_ids"]
        assert len(fast_ids) == len(ids) and fast_tokenizer.decode(fast_ids) == text
        if n <= longest or char == "\n":
            assert fast_ids == ids, n


def test_fast_tokenizer_special_tokens(fast_tokenizer: PreTrainedTokenizerFast) -> None:
    fast = fast_tokenizer
    assert (fast.unk_token_id, fast.eos_token_id, fast.pad_token_id, fast.bos_token) == (0, 1, 2, None)
    assert len(fast) == 32768 and fast.model_max_length == 2048 and fast.clean_up_tokenization_spaces is False
    assert fast(["a", "abc def"], padding=True)["input_ids"][0] == [174, 2, 2]


def test_save_is_all_or_nothing(tokenizer: ReplitLMTokenizer, tmp_path, monkeypatch) -> None:
    tokenizer.save_pretrained(tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(ReplitLMTokenizer, "save_vocabulary", fail)  # after tokenizer_config.json is staged
    with pytest.raises(OSError, match="disk full"):
        tokenizer.save_pretrained(tmp_path)
    assert {
        p.name: p.read_bytes() for p in tmp_path.iterdir()
    } == before  # nothing replaced, nothing left over


def test_a_model_the_fast_tokenizer_cannot_reproduce_is_saved_without_it(
    spiece_path, tmp_path, caplog
) -> None:
    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(spiece_path.read_bytes())
    proto.normalizer_spec.add_dummy_prefix = True
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "spiece.model").write_bytes(proto.SerializeToString())
    with caplog.at_level(logging.WARNING):
        load_tokenizer(tmp_path / "in" / "spiece.model").save_pretrained(tmp_path / "out")
    assert "add_dummy_prefix" in caplog.text and not (tmp_path / "out" / "tokenizer.json").exists()
    config = json.loads((tmp_path / "out" / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "ReplitLMTokenizer"
    assert type(AutoTokenizer.from_pretrained(tmp_path / "out")) is ReplitLMTokenizer


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
