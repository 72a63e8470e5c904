"""Two CPU processes under Composer's launcher (gloo): DDP and FSDP2 compute what one process computes.

Each run is a real `composer -n 2` launch of tests/training/dist_driver.py; the reference is the same
config in this process. Same global batch, same samples (streaming's order does not depend on the world
size), so the gradients of every step and the final weights must agree. FSDP2 over gloo in torch 2.7 sums
gradients instead of averaging them (pytorch#162338); the trainer detects and corrects it, and the FSDP2
test fails without that correction (gradient norms twice the reference).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from replitlm import ReplitLMForCausalLM
from replitlm.training.config import load_train_config
from replitlm.training.run import train
from tests.conftest import REPO
from tests.training.conftest import TINY, tiny_overrides
from tests.training.dist_driver import GradNorms

# the `composer` command, without its console script (whose shebang names the venv path it was installed from)
COMPOSER = [sys.executable, "-m", "composer.cli.launcher"]
STEPS = {"max_duration": "3ba", "optimizer.name": "decoupled_adamw", "optimizer.lr": 1e-3}
NO_CLIP = {"algorithms.gradient_clipping": "null"}  # clipping would hide a wrong gradient scale


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(token_data: Path, run_dir: Path, env: dict[str, str] | None = None, **extra: object) -> dict:
    out = run_dir / "driver.json"
    args = tiny_overrides(token_data, run_dir, **STEPS, **NO_CLIP, **extra)
    cmd = [
        *COMPOSER,
        "-n",
        "2",
        "--master_port",
        str(free_port()),
        "tests/training/dist_driver.py",
        str(out),
    ]
    proc = subprocess.run(
        cmd + args,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def reference(token_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[list[float], Path]:
    run_dir = tmp_path_factory.mktemp("one-process")
    probe = GradNorms()
    train(load_train_config(TINY, tiny_overrides(token_data, run_dir, **STEPS, **NO_CLIP)), [probe])
    return probe.norms, run_dir / "hf"


def assert_same_run(result: dict, reference: tuple[list[float], Path], run_dir: Path) -> None:
    norms, hf = reference
    assert result["world"] == 2
    assert result["grad_norms"] == pytest.approx(norms, rel=1e-5)
    ours = ReplitLMForCausalLM.from_pretrained(run_dir / "hf").state_dict()
    ref = ReplitLMForCausalLM.from_pretrained(hf).state_dict()
    for name, tensor in ref.items():
        torch.testing.assert_close(ours[name], tensor, rtol=0, atol=1e-5, msg=name)


def test_ddp_on_two_processes_matches_one(token_data: Path, tmp_path: Path, reference) -> None:
    assert_same_run(launch(token_data, tmp_path), reference, tmp_path)


def test_fsdp2_on_two_processes_matches_one(token_data: Path, tmp_path: Path, reference) -> None:
    fsdp = "{activation_checkpointing: true}"  # recomputation must not change the gradients either
    result = launch(token_data, tmp_path, env={"FSDP_VERSION": "2"}, fsdp_config=fsdp)
    assert result["checkpointed_modules"] == 2, "one checkpoint wrapper per block"
    if torch.__version__.startswith("2.7"):
        assert result["gloo_avg_sums"], "torch 2.7 + gloo is expected to sum AVG reduce-scatters"
    assert_same_run(result, reference, tmp_path)
    # a sharded checkpoint (one .distcp file per rank) converts to the same HF folder
    from replitlm.checkpoint import composer_to_hf

    (sharded,) = [p for p in (tmp_path / "checkpoints").iterdir() if p.is_dir() and not p.is_symlink()]
    assert len(list(sharded.glob("*.distcp"))) == 2
    converted = ReplitLMForCausalLM.from_pretrained(composer_to_hf(sharded, tmp_path / "conv")).state_dict()
    exported = ReplitLMForCausalLM.from_pretrained(tmp_path / "hf").state_dict()
    assert all(torch.equal(converted[k], exported[k]) for k in exported)
