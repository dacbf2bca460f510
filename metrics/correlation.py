"""Rank correlation between per-run quantities, e.g. AKD against efficacy."""

from __future__ import annotations

import math
from typing import NamedTuple, Sequence

from scipy import stats


class RankCorrelation(NamedTuple):
    """Spearman's rho and its two-sided p-value over `n` pairs; `reason` says why they are NaN."""

    rho: float
    p: float
    n: int
    reason: str = ""


def spearman_correlation(x: Sequence[float], y: Sequence[float]) -> RankCorrelation:
    """Spearman rank correlation of paired values.

    Pairs with a NaN or infinite member are dropped (an AKD of a single-edit batch is NaN).
    Instead of scipy's warning, the result is NaN with a reason when fewer than 3 pairs remain
    or either side is constant (ranks without spread have no correlation).
    """
    if len(x) != len(y):
        raise ValueError(f"Got {len(x)} x values but {len(y)} y values.")
    pairs = [(a, b) for a, b in zip(x, y) if math.isfinite(a) and math.isfinite(b)]
    n = len(pairs)
    if n < 3:
        return RankCorrelation(math.nan, math.nan, n, f"only {n} finite pairs; need at least 3")
    xs, ys = zip(*pairs)
    for name, values in (("x", xs), ("y", ys)):
        if len(set(values)) == 1:
            return RankCorrelation(math.nan, math.nan, n, f"{name} is constant ({values[0]!r})")
    result = stats.spearmanr(xs, ys)
    return RankCorrelation(float(result.statistic), float(result.pvalue), n)
