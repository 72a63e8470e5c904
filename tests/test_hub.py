"""A hub id that cannot be reached is one line naming the model and the option to point elsewhere, in the
commands users run (offline here: HF_HUB_OFFLINE=1 and no network)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from replitlm.hub import HubUnreachableError, hub_errors, unreachable
from tests.conftest import SPIECE

BIN = Path(sys.executable).parent


def test_only_unreachable_hub_ids_are_reworded(tmp_path: Path) -> None:
    cause = OSError("We couldn't connect to 'https://huggingface.co' to load the files")
    with (
        pytest.raises(
            HubUnreachableError, match=r"^--model: the model 'org/name' is on the Hugging Face hub"
        ),
        hub_errors("org/name", "--model"),
    ):
        raise cause
    for name, exc in [
        (str(tmp_path), cause),  # a local folder: its own error, whatever it says
        ("org/name", OSError("org/name does not appear to have a file named config.json")),
        ("org/name", ValueError("not a model")),
    ]:
        with pytest.raises(type(exc)) as err, hub_errors(name, "--model"):
            raise exc
        assert err.value is exc
    chained = RuntimeError("wrapper")
    chained.__cause__ = ConnectionError("Name or service not known")
    assert unreachable(chained) and not unreachable(RuntimeError("wrapper"))


@pytest.mark.integration
@pytest.mark.parametrize(
    "command, option",
    [
        (["replitlm-generate", "nobody/no-model", "--prompt", "def f():"], "MODEL"),
        (["replitlm-merge-lora", "--adapter", ".", "--base", "nobody/no-model", "--out", "out"], "--base"),
        (["replitlm-train", "yamls/quickstart/lora-tiny-cpu.yaml", "variables.base=nobody/no-model"], None),
    ],
)
def test_commands_say_so_in_one_line(command: list[str], option: str | None, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"HF_HUB_OFFLINE": "1"}
    repo = Path(__file__).resolve().parents[1]
    if command[0] == "replitlm-train":
        command = [*command, f"variables.run_dir={tmp_path}", f"tokenizer.name={SPIECE}"]
    result = subprocess.run(
        [str(BIN / command[0]), *command[1:]], cwd=repo, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 2, result.stderr[-3000:]
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert "nobody/no-model" in line and "cannot be reached" in line
    assert "Traceback" not in result.stderr
    if option is not None:
        assert line.startswith(f"error: {option}: ")
    else:  # the LoRA YAML's base: the key to override is named
        assert "model.pretrained_model_name_or_path" in line
