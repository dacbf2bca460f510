"""Fixed number formats, so that a re-rendered report is byte-identical to the first one.

Scores are fractions in the records and percentages with one decimal on the page (as the
papers print them); "–" marks a value the data cannot give. Machine-readable files (CSV) keep
fractions with six decimals and leave missing values empty.
"""

from __future__ import annotations

from experiments.tables import GROUP_LABELS

MISSING = "–"


def group_label(group: str) -> str:
    return GROUP_LABELS.get(group, group.upper())


def group_order(groups: set[str] | frozenset[str]) -> tuple[str, ...]:
    """The paper's order (TD, EM, SS, TS, then the default group), unknown groups after, sorted."""
    known = [group for group in GROUP_LABELS if group in groups]
    return tuple(known + sorted(groups - set(GROUP_LABELS)))


def percent(value: float | None) -> str:
    return MISSING if value is None else f"{100 * value:.1f}"


def fixed(value: float | None, decimals: int) -> str:
    return MISSING if value is None else f"{value:.{decimals}f}"


def seconds(value: float | None) -> str:
    """Edit times span milliseconds (retrieval) to minutes (MEMIT): fixed decimals from 0.1 s
    up, two significant digits below, so 0.0078 s does not print as 0.01."""
    if value is None:
        return MISSING
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}" if value >= 0.1 else f"{value:.2g}"


def csv_number(value: float | int | None) -> str:
    if value is None:
        return ""
    return str(value) if isinstance(value, int) else f"{value:.6f}"
