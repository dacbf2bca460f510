"""The single summary number of MedREK (eq. 13, after MedLaSA)."""

from __future__ import annotations

from typing import Sequence


def average_score(efficacy: float, generality: float, locality: Sequence[float]) -> float:
    """`((Eff + Gen) / 2 + mean(locality sub-metrics)) / 2`.

    Editing success and locality weigh half each, whatever the number of locality sub-metrics
    (four on MedCF/MedCF++, one elsewhere). Inputs share one scale (fractions or percentages).
    """
    if not locality:
        raise ValueError("average_score needs at least one locality sub-metric.")
    return ((efficacy + generality) / 2 + sum(locality) / len(locality)) / 2
