"""Perplexity on data_prep's shards: per-language numbers add up to the overall ones, which match the loss."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from replitlm.data.pipeline import PipelineConfig, run
from replitlm.evaluation.perplexity import perplexity, read_mds
from tests.conftest import STDLIB, tiny_model


@pytest.fixture(scope="module")
def mixed_shards(tmp_path_factory: pytest.TempPathFactory, spiece_path: Path) -> Path:
    root = tmp_path_factory.mktemp("mixed")
    corpus = root / "corpus"
    corpus.mkdir()
    for pattern, folder in (("*.py", STDLIB), ("*.h", Path("/usr/include"))):
        small = [p for p in sorted(folder.glob(pattern)) if 1000 < p.stat().st_size < 6000][:5]
        for path in small:
            (corpus / path.name).symlink_to(path)
    config = PipelineConfig(
        inputs=[str(corpus)], out=str(root / "mds"), tokenizer=str(spiece_path), max_seq_len=64,
        workers=0, val_fraction=0.0, sequence_id=True, progress=False, near_dedup=False,
    )  # fmt: skip
    run(config)
    return root / "mds" / "train"


def test_languages_add_up_and_match_the_model_loss(mixed_shards: Path) -> None:
    model = tiny_model(vocab_size=32768, attn_config={"attn_uses_sequence_id": True})
    samples = read_mds(mixed_shards)
    result = perplexity(model, mixed_shards, batch_size=16)
    overall, languages = result["overall"], result["languages"]
    assert set(languages) == {"C", "Python"}
    assert sum(r["tokens"] for r in languages.values()) == overall["tokens"] == len(samples) * 63
    weighted = sum(r["loss"] * r["tokens"] for r in languages.values()) / overall["tokens"]
    assert weighted == pytest.approx(overall["loss"], rel=1e-6)
    assert overall["perplexity"] == pytest.approx(math.exp(overall["loss"]))
    ids = torch.from_numpy(np.stack([s["tokens"] for s in samples]).astype(np.int64))
    seq = torch.from_numpy(np.stack([s["sequence_id"] for s in samples]).astype(np.int64))
    with torch.no_grad():
        reference = model(input_ids=ids, sequence_id=seq, labels=ids).loss
    assert overall["loss"] == pytest.approx(float(reference), rel=1e-5)


def test_the_command(mixed_shards: Path, tmp_path: Path, tokenizer, capsys: pytest.CaptureFixture) -> None:
    from replitlm.cli.eval import main

    folder = tmp_path / "model"
    tiny_model(vocab_size=32768).save_pretrained(folder)
    assert (
        main(
            [
                "--model",
                str(folder),
                "--perplexity",
                str(mixed_shards),
                "--limit",
                "8",
                "--out",
                str(tmp_path),
            ]
        )
        == 0
    )
    result = json.loads((tmp_path / "perplexity.json").read_text())
    assert result["overall"]["tokens"] == 8 * 63 and "Python" in capsys.readouterr().out
    assert main(["--model", str(folder), "--perplexity", str(tmp_path / "nowhere")]) == 2
    assert "index.json not found" in capsys.readouterr().err
