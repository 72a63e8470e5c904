from __future__ import annotations

from pathlib import Path

import pytest

from tests.data.planted import make_corpus


@pytest.fixture
def corpus(tmp_path: Path) -> tuple[Path, list[Path]]:
    """Real files (kept, in walk order) plus one planted file per drop reason."""
    return make_corpus(tmp_path / "corpus")
