"""Seeded percentile-bootstrap 95% intervals over edits (or texts, or held-out pieces).

A headline figure is a mean over units that were drawn at random (the edits of a batch, the
fluency prompts, the held-out pieces); resampling those units with replacement and recomputing
the figure shows how much it would move with another draw of the same size. The interval is
the 2.5th to 97.5th percentile of `RESAMPLES` recomputations, seeded, so a report is
reproducible. It says nothing about other seeds of the editors' own randomness or other models.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

RESAMPLES = 1000
LEVEL = 0.95

Interval = tuple[float, float]


def bootstrap_interval(units: int, statistic: Callable[[np.ndarray], float | None],
                       seed: int = 0, resamples: int = RESAMPLES) -> Interval | None:
    """The percentile interval of `statistic(indices)` over resamples of `units` units.

    `statistic` receives an index array (with repeats) into the caller's per-unit values and
    returns the figure for that resample, or None when the resample cannot give one (e.g. no
    resampled edit has rephrasings); such resamples are left out. None when there are no units
    or no resample gives a value. A single unit gives a zero-width interval.
    """
    if units < 1:
        return None
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, units, size=(resamples, units))
    values = [value for value in (statistic(row) for row in draws) if value is not None]
    if not values:
        return None
    tail = 100 * (1 - LEVEL) / 2
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def mean_interval(values: Sequence[float | None], seed: int = 0) -> Interval | None:
    """Interval of the mean of the present values, resampling every unit (absent ones too, so
    the share of units that have a value varies as it would in another draw)."""
    array = np.array([np.nan if v is None else v for v in values], dtype=float)
    present = ~np.isnan(array)

    def mean(indices: np.ndarray) -> float | None:
        kept = present[indices]
        return float(array[indices][kept].mean()) if kept.any() else None

    return bootstrap_interval(len(array), mean, seed)
