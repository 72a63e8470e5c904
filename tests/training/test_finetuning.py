"""Finetuning data: prompt/response → tokens with loss on the response only, truncation rules, packing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from replitlm.data.instruct import convert
from replitlm.training.config import DatasetSection, TrainConfigError, load_train_config
from replitlm.training.data import DataError, TokenCollator
from replitlm.training.finetuning import build_samples, encode_example, pack
from tests.conftest import SHARED, tiny_model
from tests.training.conftest import TINY

ALPACA = SHARED / "data" / "code_alpaca_2k.json"
LORA_TINY = TINY.with_name("lora-tiny-cpu.yaml")
EOS = 1


def test_an_example_is_prompt_then_response_then_eos_with_loss_on_the_response_only() -> None:
    tokens, labels = encode_example([5, 6, 7], [8, 9], EOS, max_seq_len=16, overlong="truncate")
    assert tokens.tolist() == [5, 6, 7, 8, 9, EOS]
    assert labels.tolist() == [-100, -100, -100, 8, 9, EOS]


def test_overlong_examples_are_truncated_or_dropped_and_a_prompt_that_fills_the_window_is_dropped() -> None:
    tokens, labels = encode_example([5, 6, 7], [8, 9, 10, 11], EOS, max_seq_len=5, overlong="truncate")
    assert tokens.tolist() == [5, 6, 7, 8, 9] and labels.tolist() == [-100, -100, -100, 8, 9]
    assert encode_example([5, 6, 7], [8, 9, 10], EOS, max_seq_len=5, overlong="drop") == "overlong"
    assert encode_example([5] * 5, [8], EOS, max_seq_len=5, overlong="truncate") == "prompt_too_long"


def test_packing_keeps_examples_whole_in_order_and_numbers_them() -> None:
    examples = [
        (np.arange(n, dtype=np.int32) + 10 * i, np.full(n, i, dtype=np.int32))
        for i, n in enumerate([3, 4, 2, 6, 1])
    ]
    sequences = pack(examples, max_seq_len=7)
    assert [s["tokens"].tolist() for s in sequences] == [
        [0, 1, 2, 10, 11, 12, 13],
        [20, 21],  # the next example (6 tokens) does not fit beside these 2
        [30, 31, 32, 33, 34, 35, 40],
    ]
    assert [s["sequence_id"].tolist() for s in sequences] == [
        [0, 0, 0, 1, 1, 1, 1],
        [0, 0],
        [0, 0, 0, 0, 0, 0, 1],
    ]
    assert np.concatenate([s["labels"] for s in sequences]).tolist() == [0] * 3 + [1] * 4 + [2] * 2 + [
        3
    ] * 6 + [4]


def alpaca(**fields: object) -> DatasetSection:
    return DatasetSection(path=str(ALPACA), **fields)


def test_code_alpaca_becomes_samples_whose_labels_mask_exactly_the_prompt(tokenizer) -> None:
    samples, report = build_samples(alpaca(), tokenizer, 512, "train_loader")
    records = json.loads(ALPACA.read_text())
    assert report.examples == len(samples) == len(records) - 2 - report.dropped_prompt_too_long
    # the two records with an empty output, named by the line their record starts on
    lines = ALPACA.read_text().splitlines()
    assert len(report.bad) == 2
    for problem in report.bad:
        where, why = problem.rsplit(": ", 1)
        line = int(where.rsplit(":", 1)[1])
        assert why == "empty response" and lines[line - 1].strip() == "{"
    first = samples[0]
    prompt = tokenizer.encode_batch(
        [
            "### Instruction:\n"
            + records[0]["instruction"]
            + "\n\n### Input:\n"
            + records[0]["input"]
            + "\n\n### Response:\n"
        ]
    )[0]
    response = tokenizer.encode_batch([records[0]["output"]])[0]
    assert first["tokens"].tolist() == prompt + response + [tokenizer.eos_token_id]
    assert (first["labels"][: len(prompt)] == -100).all()
    assert first["labels"][len(prompt) :].tolist() == [*response, tokenizer.eos_token_id]


def test_packed_samples_carry_sequence_ids_and_lose_no_response_token(tokenizer) -> None:
    plain, plain_report = build_samples(alpaca(), tokenizer, 256, "train_loader")
    packed, report = build_samples(alpaca(packing=True), tokenizer, 256, "train_loader")
    assert report.examples == plain_report.examples and report.truncated == plain_report.truncated
    assert len(packed) < len(plain) / 1.3 and all(len(s["tokens"]) <= 256 for s in packed)
    assert report.response_tokens == plain_report.response_tokens
    for s in packed[:50]:  # every example inside a sequence ends with EOS (or was truncated)
        ids = s["sequence_id"]
        assert ids[0] == 0 and (np.diff(ids) >= 0).all() and (np.diff(ids) <= 1).all()


def test_bad_records_are_reported_with_their_line_numbers(tokenizer, tmp_path: Path) -> None:
    lines = [
        {"instruction": "Add one.", "input": "", "output": "x + 1"},
        {"instruction": "Missing output."},
        {"instruction": "Empty.", "output": "   "},
        {"instruction": ["not", "a string"], "output": "y"},
        {"prompt": "p", "response": 3},
        {"prompt": "", "response": "z = 1"},  # packed, the previous example's EOS would learn to predict it
    ]
    data = tmp_path / "bad.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in lines) + "\n{not json\n")
    samples, report = build_samples(DatasetSection(path=str(data)), tokenizer, 64, "train_loader")
    assert len(samples) == 1
    assert report.bad == [
        f"{data}:2: missing field 'output'",
        f"{data}:3: empty response",
        f"{data}:4: field 'instruction' must be a string, got list",
        f"{data}:5: field 'response' must be a string, got int",
        f"{data}:6: empty prompt",
        f"{data}:7: invalid JSON (Expecting property name enclosed in double quotes)",
    ]
    with pytest.raises(DataError, match=rf"{data}:2: missing field 'output' \(train_loader.dataset.strict"):
        build_samples(DatasetSection(path=str(data), strict=True), tokenizer, 64, "train_loader")
    with pytest.raises(DataError, match=r"train_loader.path: .*nope\.json"):
        build_samples(DatasetSection(path=str(tmp_path / "nope.json")), tokenizer, 64, "train_loader")


def test_mds_from_convert_instruct_dataset_gives_the_same_samples(tokenizer, tmp_path: Path) -> None:
    convert([str(ALPACA)], str(tmp_path / "mds"))
    from_json, _ = build_samples(alpaca(), tokenizer, 256, "train_loader")
    from_mds, report = build_samples(
        DatasetSection(local=str(tmp_path / "mds")), tokenizer, 256, "train_loader"
    )
    assert not report.bad and len(from_mds) == len(from_json)
    assert all(np.array_equal(a["labels"], b["labels"]) for a, b in zip(from_json, from_mds, strict=True))
    # the same shards read through `remote` (a folder here, an object store in real runs) into a local cache
    remote = DatasetSection(local=str(tmp_path / "cache"), remote=str(tmp_path / "mds"))
    from_remote, _ = build_samples(remote, tokenizer, 256, "train_loader")
    assert all(np.array_equal(a["tokens"], b["tokens"]) for a, b in zip(from_mds, from_remote, strict=True))


def test_reading_local_mds_leaves_no_descriptor_open(tokenizer, tmp_path: Path) -> None:
    """Local instruct shards are read without a StreamingDataset, whose shared-memory handles stay open until
    the process exits (and grow with every dataset built in it)."""
    import os

    convert([str(ALPACA)], str(tmp_path / "mds"))
    build_samples(DatasetSection(local=str(tmp_path / "mds")), tokenizer, 256, "train_loader")
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(3):
        build_samples(DatasetSection(local=str(tmp_path / "mds")), tokenizer, 256, "train_loader")
    assert len(os.listdir("/proc/self/fd")) <= before


def test_mds_shards_without_prompt_and_response_are_named(tokenizer, tmp_path: Path) -> None:
    from streaming import MDSWriter

    for missing in ("prompt", "response"):
        kept = {"prompt": "str", "response": "str"}
        kept.pop(missing)
        with MDSWriter(out=str(tmp_path / missing), columns=kept) as writer:
            writer.write({k: "x" for k in kept})
        with pytest.raises(DataError, match=r"sample 0 has columns .* expected prompt and response"):
            build_samples(DatasetSection(local=str(tmp_path / missing)), tokenizer, 64, "train_loader")


def test_the_model_loss_is_the_mean_over_response_tokens_only(tokenizer) -> None:
    samples, _ = build_samples(alpaca(), tokenizer, 128, "train_loader")
    batch = TokenCollator(128, 32768, 0, use_sequence_id=False)(samples[:3])
    assert (batch["labels"][batch["attention_mask"] == 0] == -100).all()
    model = tiny_model(vocab_size=32768)
    with torch.no_grad():
        out = model(**batch)
    logits, labels = out.logits[:, :-1], batch["labels"][:, 1:]
    keep = labels != -100
    expected = torch.nn.functional.cross_entropy(logits[keep], labels[keep])
    torch.testing.assert_close(out.loss, expected)
    assert keep.sum() == sum(int((s["labels"][1:] >= 0).sum()) for s in samples[:3])


def test_finetuning_config_errors_name_the_key() -> None:
    def error(*overrides: str) -> str:
        with pytest.raises(TrainConfigError) as exc:
            load_train_config(LORA_TINY, list(overrides))
        return str(exc.value)

    assert error("train_loader.dataset.packing=maybe") == (
        "train_loader.dataset.packing: expected bool, got str 'maybe'"
    )
    assert error("train_loader.dataset.overlong=cut").startswith(
        "train_loader.dataset.overlong: 'cut' is not one"
    )
    assert error("train_loader.dataset.prompt_template=no fields") == (
        "train_loader.dataset.prompt_template: lacks {instruction}, {input}"
    )
    assert error("train_loader.dataset.use_sequence_id=false").startswith(
        "train_loader.dataset.use_sequence_id: packing needs sequence_id"
    )
    assert error("train_loader.dataset.local=/x").startswith("train_loader.dataset: set either `path`")
    assert error("lora.target_modules=[qkv]").startswith("lora.target_modules[0]: 'qkv' is not one of")
    assert error("lora.r=0") == "lora.r: must be a positive integer"
    assert error("lora.dropout=1.5") == "lora.dropout: must be in [0, 1)"
    assert error("lora.alpah=4") == "lora.alpah: unknown key (did you mean 'alpha'?)"
    with pytest.raises(
        TrainConfigError, match=r"train_loader\.dataset\.packing: is only for prompt/response data"
    ):
        load_train_config(TINY, ["train_loader.dataset.packing=true"])


def test_the_base_falls_back_to_a_preset_and_the_tokenizer_follows_the_model(tmp_path: Path) -> None:
    missing = load_train_config(LORA_TINY, [f"model.pretrained_model_name_or_path={tmp_path / 'none'}"])
    assert missing.model.size == "tiny" and missing.model.pretrained_model_name_or_path is None
    assert missing.tokenizer.name == "replit/replit-code-v1-3b"
    folder = tmp_path / "hf"
    folder.mkdir()
    (folder / "spiece.model").write_bytes(b"")
    present = load_train_config(LORA_TINY, [f"model.pretrained_model_name_or_path={folder}"])
    assert present.model.pretrained_model_name_or_path == str(folder) and present.model.size is None
    assert present.tokenizer.name == str(folder)


def test_an_example_that_exactly_fills_the_window_is_kept_whole() -> None:
    tokens, labels = encode_example([5, 6], [8, 9], EOS, max_seq_len=5, overlong="drop")
    assert tokens.tolist() == [5, 6, 8, 9, EOS] and labels.tolist() == [-100, -100, 8, 9, EOS]
    assert tokens.dtype == labels.dtype == np.int32


def test_the_report_counts_each_fate_and_the_order_is_the_seeds(tokenizer, tmp_path: Path) -> None:
    """Counts in the report that training prints (kept, truncated, dropped for each reason, tokens with
    loss), with records whose lengths in tokens are known; packing's shuffle depends on the seed alone."""
    word = "x = 1\n"  # a few tokens each, the same every time
    n = len(tokenizer(word, add_special_tokens=False)["input_ids"])
    records = [
        {"prompt": word, "response": word},  # fits
        {"prompt": word * 3, "response": word * 3},  # 7n + 1 > 5n: truncated (or dropped)
        {"prompt": word * 6, "response": word},  # the prompt alone fills the window
        {"prompt": word, "response": word * 2},  # 3n + 1: fits
    ]
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in records))
    for overlong, kept in (("truncate", 3), ("drop", 2)):
        section = DatasetSection(path=str(data), overlong=overlong)
        samples, report = build_samples(section, tokenizer, 5 * n, "train_loader")
        assert report.examples == len(samples) == report.sequences == kept, overlong
        assert report.dropped_prompt_too_long == 1
        assert (report.truncated, report.dropped_overlong) == ((1, 0) if overlong == "truncate" else (0, 1))
        assert report.tokens == sum(len(s["tokens"]) for s in samples)
        assert report.response_tokens == sum(int((s["labels"] != -100).sum()) for s in samples)
    many = tmp_path / "many.jsonl"
    many.write_text("".join(json.dumps({"prompt": f"# {i}\n", "response": word}) + "\n" for i in range(40)))

    def order(seed: int) -> list[list[int]]:
        section = DatasetSection(path=str(many), packing=True, shuffle_seed=seed)
        return [s["tokens"].tolist() for s in build_samples(section, tokenizer, 64, "train_loader")[0]]

    assert order(1) == order(1) != order(2)
