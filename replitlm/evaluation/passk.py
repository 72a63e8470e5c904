"""The unbiased pass@k estimator (Chen et al. 2021, "Evaluating Large Language Models Trained on Code").

With n samples of which c pass, pass@k = 1 - C(n-c, k) / C(n, k): the chance that k samples drawn without
replacement from the n include at least one that passes. Computed as a product to stay exact for large n.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np


def pass_at_k(n: int, c: int, k: int) -> float:
    """pass@k of one problem with n samples, c of them correct."""
    if not 0 <= c <= n:
        raise ValueError(f"need 0 <= correct <= samples, got correct={c}, samples={n}")
    if k < 1 or k > n:
        raise ValueError(f"k={k} needs 1 <= k <= samples ({n})")
    if n - c < k:
        return 1.0  # every draw of k contains a correct sample
    # C(n-c, k) / C(n, k) = prod_{i=n-c+1}^{n} (1 - k / i)
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def mean_pass_at_k(counts: Iterable[tuple[int, int]], ks: Sequence[int]) -> dict[str, float]:
    """Mean pass@k over problems given (samples, correct) per problem; a k above a problem's n is skipped."""
    counts = list(counts)
    result = {}
    for k in ks:
        if counts and all(n >= k for n, _ in counts):
            result[f"pass@{k}"] = float(np.mean([pass_at_k(n, c, k) for n, c in counts]))
    return result
