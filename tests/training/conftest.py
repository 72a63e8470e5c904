"""Fixtures for training tests: small MDS token datasets written with streaming's MDSWriter, and configs."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from streaming import MDSWriter

from tests.conftest import REPO, SPIECE, tiny_model

TINY = REPO / "yamls" / "quickstart" / "tiny-cpu.yaml"


def write_token_shards(
    folder: Path, n_samples: int, seq_len: int, seed: int = 0, sequence_id: bool = False
) -> Path:
    """Learnable token samples: runs of +step sequences (mod 1000, offset by 3 to avoid special ids)."""
    rng = np.random.default_rng(seed)
    columns = {"tokens": "ndarray:uint32"}
    if sequence_id:
        columns["sequence_id"] = "ndarray:uint16"
    with MDSWriter(out=str(folder), columns=columns, compression="zstd:1", size_limit=1 << 14) as writer:
        for _ in range(n_samples):
            start, step = rng.integers(0, 1000), rng.integers(1, 4)
            tokens = (3 + (start + step * np.arange(seq_len)) % 1000).astype(np.uint32)
            sample = {"tokens": tokens}
            if sequence_id:
                sample["sequence_id"] = (np.arange(seq_len) // (seq_len // 2)).astype(np.uint16)
            writer.write(sample)
    return folder


@pytest.fixture(scope="session")
def pristine_token_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Written once per session and never handed to a test: see token_data."""
    root = tmp_path_factory.mktemp("mds")
    write_token_shards(root / "train", 96, 32, seed=0, sequence_id=True)
    write_token_shards(root / "val", 16, 32, seed=1, sequence_id=True)
    return root


def copy_of(pristine: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("mds-copy")
    shutil.copytree(pristine, root, dirs_exist_ok=True)
    return root


@pytest.fixture
def token_data(pristine_token_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Train and val MDS shards of this test's own: streaming decompresses shards in place (next to the
    .zstd files) when a dataset has no remote, so a shared folder would change under later tests."""
    return copy_of(pristine_token_data, tmp_path_factory)


@pytest.fixture(scope="module")
def module_token_data(pristine_token_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same shards for a module-scoped fixture (a reference run that its module's tests compare with)."""
    return copy_of(pristine_token_data, tmp_path_factory)


@pytest.fixture(scope="session")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random base model with the replit tokenizer, saved like any HF folder (read-only for tests)."""
    from replitlm import ReplitLMTokenizer

    folder = tmp_path_factory.mktemp("base")
    tiny_model(n_heads=2, vocab_size=32768, max_seq_len=128).save_pretrained(folder)
    ReplitLMTokenizer(vocab_file=str(SPIECE)).save_pretrained(folder)
    return folder


def tiny_overrides(data: Path, run_dir: Path, **extra: object) -> list[str]:
    """Dotlist overrides that turn yamls/quickstart/tiny-cpu.yaml into a seconds-long test run."""
    base = {
        "run_name": "test",
        "tokenizer.name": str(SPIECE),
        "model.d_model": 64,
        "model.n_heads": 2,
        "model.n_layers": 2,
        "model.vocab_size": 32768,
        "max_seq_len": 32,
        "global_train_batch_size": 4,
        "device_train_microbatch_size": 2,
        "train_loader.dataset.local": str(data),
        "eval_loader.dataset.local": str(data),
        "save_folder": str(run_dir / "checkpoints"),
        "callbacks.hf_export.save_folder": str(run_dir / "hf"),
        "progress_bar": False,
        "eval_subset_num_batches": -1,
        "scheduler.t_warmup": "2ba",
        "eval_interval": "100ba",
        "save_interval": "100ba",
        "max_duration": "4ba",
    }
    base.update(extra)
    return [f"{k}={v}" for k, v in base.items()]
