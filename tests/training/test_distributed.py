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

# Launches processes, trains, or runs the sandbox: in `make test`, not in `make test-fast`.
pytestmark = pytest.mark.integration

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
    args = tiny_overrides(token_data, run_dir, **{**STEPS, **NO_CLIP, **extra})
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
def reference(module_token_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[list[float], Path]:
    run_dir = tmp_path_factory.mktemp("one-process")
    probe = GradNorms()
    train(load_train_config(TINY, tiny_overrides(module_token_data, run_dir, **STEPS, **NO_CLIP)), [probe])
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
    from replitlm.export import composer_to_hf

    (sharded,) = [p for p in (tmp_path / "checkpoints").iterdir() if p.is_dir() and not p.is_symlink()]
    assert len(list(sharded.glob("*.distcp"))) == 2
    converted = ReplitLMForCausalLM.from_pretrained(composer_to_hf(sharded, tmp_path / "conv")).state_dict()
    exported = ReplitLMForCausalLM.from_pretrained(tmp_path / "hf").state_dict()
    assert all(torch.equal(converted[k], exported[k]) for k in exported)


def test_fsdp1_loads_the_base_on_rank_0_only_resumes_bit_exactly_and_exports(
    token_data: Path, base: Path, tmp_path: Path
) -> None:
    """Full fine-tuning of a pretrained base under Composer's FSDP1 (the users' path; on CPUs through
    tests/training/fsdp1_cpu.py): rank 0 alone reads the weights and FSDP broadcasts them, so both ranks
    train what one process trains; a run stopped at batch 2 and relaunched ends bit-identical to a straight
    one; the export loads."""
    from tests.training import fsdp1_cpu

    pretrained = {"model.size": "null", "model.pretrained_model_name_or_path": str(base)}
    # sharded checkpoints, as the shipped FSDP YAMLs write them: resumption from FSDP1's default 'full' ones
    # gave a different first update on CPUs (see docs/reliability.md)
    fsdp_config = "{sharding_strategy: FULL_SHARD, state_dict_type: sharded}"
    fsdp = {"fsdp_config": fsdp_config, "autoresume": True, "save_interval": "2ba"}
    probe = GradNorms()
    steps = {**STEPS, **NO_CLIP, **pretrained, "max_duration": "4ba"}
    overrides = tiny_overrides(token_data, tmp_path / "one", **steps)
    train(load_train_config(TINY, overrides), [probe])

    def launch_fsdp1(run_dir: Path, batches: int) -> dict:
        return launch(
            token_data, run_dir, env={fsdp1_cpu.ENV: "1"}, **pretrained, **fsdp, max_duration=f"{batches}ba"
        )

    straight = launch_fsdp1(tmp_path / "straight", 4)
    assert straight["grad_norms"] == pytest.approx(probe.norms, rel=1e-5), "rank 1 trained other weights"
    loads = [json.loads((tmp_path / "straight" / f"driver.json.rank{r}").read_text()) for r in (0, 1)]
    assert loads[0]["pretrained_loads"] == [str(base)] and loads[1]["pretrained_loads"] == []
    assert launch_fsdp1(tmp_path / "resumed", 2)["grad_norms"] == straight["grad_norms"][:2]
    assert launch_fsdp1(tmp_path / "resumed", 4)["grad_norms"] == straight["grad_norms"][2:]
    a = ReplitLMForCausalLM.from_pretrained(tmp_path / "straight" / "hf").state_dict()
    b = ReplitLMForCausalLM.from_pretrained(tmp_path / "resumed" / "hf").state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
