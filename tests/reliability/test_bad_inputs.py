"""Bad input, table-driven: each entry point (train, data_prep, eval) given each bad input exits non-zero
with one line on stderr that names the culprit and no traceback. Plus full disks while writing shards and
checkpoints: a clear error, and nothing half-written is ever used as if it were complete."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from replitlm.cli.eval import main as evaluate
from replitlm.cli.prep import main as convert_code
from replitlm.cli.prep_instruct import main as convert_instruct
from replitlm.cli.train import main as train_main
from tests.conftest import SPIECE, STDLIB
from tests.training.conftest import TINY, tiny_overrides, write_token_shards

# Launches processes, trains, or runs the sandbox: in `make test`, not in `make test-fast`.
pytestmark = pytest.mark.integration

NO_DOCS = {"model.attn_config.attn_uses_sequence_id": False}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Good and broken files side by side, and one finished tiny run (a real checkpoint)."""
    root = tmp_path_factory.mktemp("bad")
    for name in ("good", "no_shard", "short_shard", "bad_index"):
        write_token_shards(root / name / "train", 32, 32)
        write_token_shards(root / name / "val", 8, 32, seed=1)
    (root / "no_shard" / "train" / "shard.00000.mds.zstd").unlink()
    shard = root / "short_shard" / "train" / "shard.00000.mds.zstd"
    shard.write_bytes(shard.read_bytes()[:100])
    (root / "bad_index" / "train" / "index.json").write_text('{"shards": [')
    (root / "not_a_tokenizer.model").write_text("this is not a sentencepiece model")
    (root / "broken.yaml").write_text("model:\n  size: tiny\n  n_layers: [1, 2\n")
    (root / "not_a_checkpoint.pt").write_bytes(b"\x80\x04garbage" * 100)
    (root / "samples.jsonl").write_text('{"task_id": "HumanEval/0", "completion": "  pass\\n"}\n{oops\n')
    (root / "alpaca.json").write_text('[{"instruction": "a", "output": "b"}')
    assert (
        train_main([str(TINY), *tiny_overrides(root / "good", root / "run", max_duration="2ba", **NO_DOCS)])
        == 0
    )
    checkpoint = root / "run" / "checkpoints" / "ep0-ba2-rank0.pt"
    data = checkpoint.read_bytes()
    (root / "truncated.pt").write_bytes(data[: len(data) // 2])
    return root


def train_with(**overrides: object) -> Callable[[Path], int]:
    def run(root: Path) -> int:
        values = {k: str(v).format(root=root) for k, v in overrides.items()}
        return train_main(
            [str(TINY), *tiny_overrides(root / "good", root / "runs" / uuid.uuid4().hex, **NO_DOCS, **values)]
        )

    return run


def cli(main: Callable[[list[str]], int], *args: str) -> Callable[[Path], int]:
    return lambda root: main([a.format(root=root, spiece=SPIECE, stdlib=STDLIB) for a in args])


# (what, entry point, text the one-line error must contain)
CASES = [
    ("train: malformed YAML", lambda root: train_main([str(root / "broken.yaml")]), "broken.yaml"),
    (
        "train: missing config",
        lambda root: train_main([str(root / "nope.yaml")]),
        "nope.yaml: no such config file",
    ),
    (
        "train: unknown key",
        train_with(**{"optimizer.lrr": 1}),
        "optimizer.lrr: unknown key (did you mean 'lr'?)",
    ),
    ("train: wrong type", train_with(**{"optimizer.lr": "fast"}), "optimizer.lr: expected float, got str"),
    (
        "train: negative batch",
        train_with(global_train_batch_size=-4),
        "global_train_batch_size: must be a positive",
    ),
    ("train: bad duration", train_with(max_duration="ten"), "max_duration: 'ten' is not a duration"),
    (
        "train: missing data",
        train_with(**{"train_loader.dataset.local": "{root}/nowhere"}),
        "index.json not found",
    ),
    (
        "train: index points at a missing shard",
        train_with(**{"train_loader.dataset.local": "{root}/no_shard"}),
        "shard.00000.mds.zstd is listed in index.json but missing",
    ),
    (
        "train: truncated shard",
        train_with(**{"train_loader.dataset.local": "{root}/short_shard"}),
        "shard.00000.mds.zstd has 100 bytes, the index says",
    ),
    (
        "train: unreadable index",
        train_with(**{"train_loader.dataset.local": "{root}/bad_index"}),
        "bad_index/train/index.json is not a readable MDS index",
    ),
    (
        "train: tokenizer is not sentencepiece",
        train_with(**{"tokenizer.name": "{root}/not_a_tokenizer.model"}),
        "tokenizer.name: ",
    ),
    ("train: load_path missing", train_with(load_path="{root}/nope.pt"), "load_path: "),
    (
        "train: truncated checkpoint",
        train_with(load_path="{root}/truncated.pt"),
        "truncated.pt is truncated or not a Composer checkpoint",
    ),
    (
        "train: not a checkpoint",
        train_with(load_path="{root}/not_a_checkpoint.pt"),
        "not_a_checkpoint.pt is truncated or not a Composer checkpoint",
    ),
    (
        "train: checkpoint of another model shape",
        train_with(load_path="{root}/run/checkpoints/ep0-ba2-rank0.pt", **{"model.d_model": 128}),
        "ep0-ba2-rank0.pt: cannot be loaded into this run (Error(s) in loading state_dict",
    ),
    (
        "data_prep: missing input",
        cli(convert_code, "--input", "{root}/nowhere", "--out", "{root}/o1", "--tokenizer", "{spiece}"),
        "nowhere",
    ),
    (
        "data_prep: tokenizer is not sentencepiece",
        cli(
            convert_code,
            "--input",
            "{stdlib}/json",
            "--out",
            "{root}/o2",
            "--tokenizer",
            "{root}/not_a_tokenizer.model",
        ),
        "not_a_tokenizer.model",
    ),
    (
        "data_prep: negative max_seq_len",
        cli(
            convert_code,
            "--input",
            "{stdlib}/json",
            "--out",
            "{root}/o3",
            "--tokenizer",
            "{spiece}",
            "--max-seq-len",
            "-5",
        ),
        "max-seq-len",
    ),
    (
        "data_prep: output exists",
        cli(convert_code, "--input", "{stdlib}/json", "--out", "{root}/good", "--tokenizer", "{spiece}"),
        "--overwrite",
    ),
    (
        "instruct: truncated JSON",
        cli(convert_instruct, "--input", "{root}/alpaca.json", "--out", "{root}/o4.jsonl"),
        "alpaca.json:1: invalid JSON",
    ),
    (
        "eval: missing samples",
        cli(evaluate, "--task", "humaneval", "--samples", "{root}/nope.jsonl"),
        "nope.jsonl: no such samples file",
    ),
    (
        "eval: malformed samples",
        cli(evaluate, "--task", "humaneval", "--samples", "{root}/samples.jsonl"),
        "samples.jsonl:2",
    ),
    ("eval: missing model", cli(evaluate, "--task", "humaneval", "--model", "{root}/no-model"), "no-model"),
    (
        "eval: perplexity on a broken shard",
        cli(evaluate, "--model", "{root}/nowhere", "--perplexity", "{root}/no_shard/train"),
        "nowhere",
    ),
]


@pytest.mark.parametrize(("what", "entry", "expected"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_naming_the_culprit(
    what: str, entry: Callable[[Path], int], expected: str, world: Path, capsys: pytest.CaptureFixture
) -> None:
    capsys.readouterr()
    code = entry(world)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip() and not _is_progress(line)]
    assert code not in (0, None), what
    assert "Traceback" not in err, err[-2000:]
    assert len(lines) == 1 and lines[0].startswith("error: "), err[-2000:]
    assert expected.format(root=world) in lines[0], lines[0]


def _is_progress(line: str) -> bool:
    return "it/s]" in line or "files/s]" in line or line.startswith(("files:", "\r"))


# -- full disks ----------------------------------------------------------------------------------------------
@pytest.fixture
def small_disk(tmp_path: Path):
    """A 4 MB tmpfs (skipped where mounting is not permitted)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True
    ).returncode:
        pytest.skip("mounting a small tmpfs needs root (the disk-full tests need a full disk)")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_shards_on_a_full_disk_fail_clearly_and_publish_nothing(
    small_disk: Path, capsys: pytest.CaptureFixture
) -> None:
    (small_disk / "filler").write_bytes(b"\0" * (4056 << 10))  # leave ~40 KB
    code = convert_code(
        [
            "--input",
            str(STDLIB / "json"),
            str(STDLIB / "email"),
            "--out",
            str(small_disk / "out"),
            "--tokenizer",
            str(SPIECE),
            "--max-seq-len",
            "256",
            "--workers",
            "1",
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2 and err.startswith(f"error: writing {small_disk / 'out'}: No space left on device")
    assert not (small_disk / "out").exists()  # the output appears only when complete


def test_checkpoints_on_a_full_disk_fail_clearly_and_resume_after_space_is_freed(
    small_disk: Path, token_data: Path, capsys: pytest.CaptureFixture
) -> None:
    args = tiny_overrides(token_data, small_disk, max_duration="4ba", save_interval="2ba", autoresume=True)
    args = [a for a in args if not a.startswith("callbacks.hf_export")]
    assert train_main([str(TINY), *args]) == 2  # a tiny model's checkpoint is ~9 MB: the 4 MB disk fills up
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f"error: save_folder: the disk of {small_disk / 'checkpoints'} is full")
    assert not (small_disk / "checkpoints" / "latest-rank0.pt").exists()
    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
    assert train_main([str(TINY), *args]) == 0
    names = {p.name for p in (small_disk / "checkpoints").iterdir()}
    assert {"ep0-ba2-rank0.pt.incomplete", "ep0-ba4-rank0.pt", "latest-rank0.pt"} <= names
    assert "set aside incomplete ep0-ba2-rank0.pt" in capsys.readouterr().out


def test_composer_checkpoints_are_documented_as_pickles() -> None:
    from tests.conftest import REPO

    doc = (REPO / "docs" / "reliability.md").read_text()
    assert "pickle" in doc and "trust" in doc
