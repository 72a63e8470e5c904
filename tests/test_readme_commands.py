"""Every command in the README's bash blocks works as written after the set-up (`make install`, then
`source .venv/bin/activate`): in a clean environment (the venv's bin first on PATH, no PYTHONPATH), from the
repository root, each entry starts and answers `--help`, knows every option the README gives it, and every
YAML or script it names exists; the console scripts do the same from another folder. The quickstart's real
steps run in tests/test_quickstart.py, in the same clean environment."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.conftest import REPO

# Launches processes, trains, or runs the sandbox: in `make test`, not in `make test-fast`.
pytestmark = pytest.mark.integration

BIN = Path(sys.executable).parent
# `make install` and `source .venv/bin/activate` are the set-up itself; `make test` is this suite;
# `make quickstart` runs tests/test_quickstart.py's script.
SET_UP = ("make", "source")


def readme_commands() -> list[list[str]]:
    text = (REPO / "README.md").read_text()
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):  # NNODES=4 ... before the command
                words = words[1:]
            if words:
                commands.append(words)
    return commands


COMMANDS = readme_commands()


def clean_env() -> dict[str, str]:
    """What `source .venv/bin/activate` in a fresh shell gives: the venv first on PATH, no PYTHONPATH."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    return env | {"PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}", "VIRTUAL_ENV": str(BIN.parent)}


def entry_and_args(words: list[str]) -> tuple[list[str], list[str]]:
    """(the command that starts the entry, its arguments) for python/composer/console-script lines."""
    if words[0] == "composer":
        words = words[1:]
        while words[0].startswith("-"):  # composer's own options: -n 8, --world_size 4, ...
            words = words[2:] if words[0] in ("-n", "--nproc", "--world_size", "--node_rank") else words[1:]
        return ["python", words[0]], words[1:]
    if words[0] == "python":
        return words[:2], words[2:]
    return words[:1], words[1:]


def help_text(entry: list[str], cwd: Path) -> str:
    result = subprocess.run(
        [*entry, "--help"], cwd=cwd, env=clean_env(), capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, f"{shlex.join(entry)} --help:\n{result.stderr[-3000:]}"
    assert "usage" in result.stdout.lower()
    return result.stdout


def test_the_readme_shows_the_entries() -> None:
    firsts = {words[0] for words in COMMANDS}
    assert {"make", "python", "composer"} <= firsts and any(w[0].startswith("replitlm-") for w in COMMANDS)
    assert len(COMMANDS) >= 20


@pytest.mark.parametrize("words", COMMANDS, ids=[shlex.join(w)[:60] for w in COMMANDS])
def test_readme_command_works_as_written(words: list[str]) -> None:
    if words[0] in SET_UP:
        assert words[1:2] in (["install"], ["test"], ["test-fast"], ["quickstart"], [".venv/bin/activate"]), (
            words
        )
        return
    if words[0] in ("sbatch",) or words[0].endswith(".sh"):  # launchers: a GPU cluster; check what they name
        script = next(w for w in words if w.endswith((".sh", ".sbatch")))
        assert subprocess.run(["bash", "-n", REPO / script]).returncode == 0
        assert all((REPO / w).is_file() for w in words if w.endswith(".yaml"))
        return
    entry, args = entry_and_args(words)
    if entry[0] == "python":
        assert (REPO / entry[1]).is_file(), entry[1]
    usage = help_text(entry, REPO)
    for arg in args:
        if arg.startswith("--"):
            assert arg.split("=")[0] in usage, f"{shlex.join(entry)} has no option {arg}"
        elif arg.endswith(".yaml"):
            assert (REPO / arg).is_file(), arg


SCRIPTS = sorted(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"])


@pytest.mark.parametrize("script", SCRIPTS)
def test_console_script_runs_from_another_folder(script: str, tmp_path: Path) -> None:
    assert (BIN / script).is_file(), f"{script} is not installed: run `make install`"
    help_text([script], tmp_path)


def test_every_console_script_is_in_the_readme() -> None:
    readme = (REPO / "README.md").read_text()
    assert all(f"`{script}`" in readme for script in SCRIPTS)
