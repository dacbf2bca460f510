"""Combine per-request scores and per-step model health into `Aggregate`s (pure arithmetic).

Every request weighs the same, whatever its number of rephrasings or probes, as in the MedREK
and RECIPE evaluation code. A score that some requests cannot have (efficacy score without
`target_true`, generality without rephrasings, a locality group a record lacks) is averaged
over the requests that have it, and is None when none has it.

Every headline figure also gets its 95% bootstrap interval (`metrics.uncertainty`, seeded by
`INTERVAL_SEED`), stored in `Aggregate.intervals` under the figure's field name: the requests
are resampled with replacement and each figure (Average included, from the resampled means)
recomputed; fluency resamples its generations. Perplexity's interval comes from its step
(paired over held-out pieces); over several steps the bounds are averaged, which is wider
than the interval of the mean, never narrower.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from experiments.records import Aggregate, Interval, ModelHealth, RequestResult, RetrievalSummary
from metrics import average_score, bootstrap_interval, mean_interval, mean_locality

INTERVAL_SEED = 0  # the same resamples for every run, so two editors' intervals are comparable


def aggregate(results: Sequence[RequestResult], health: Sequence[ModelHealth]) -> Aggregate:
    """The aggregate of `results` scored under the steps whose health is given."""
    if not results:
        raise ValueError("aggregate needs at least one request result.")
    combined = combine_health(health)
    efficacy = _mean([r.efficacy_accuracy for r in results])
    generality = _mean_present([r.generality_accuracy for r in results])
    locality = _locality_means(results)
    locality_values = list(locality.values())
    return Aggregate(
        requests=len(results),
        efficacy_accuracy=efficacy,
        efficacy_score=_mean_present([r.efficacy_score for r in results]),
        generality_accuracy=generality,
        generality_score=_mean_present([r.generality_score for r in results]),
        locality=locality,
        locality_mean=mean_locality(locality) if locality else None,
        # Eq. 13 needs both halves; without rephrasings or probes it is undefined, not Eff.
        average=(average_score(efficacy, generality, locality_values)
                 if generality is not None and locality_values else None),
        health=combined,
        locality_score=_mean_present([r.locality_score for r in results]),
        intervals=_intervals(results, combined),
    )


def _intervals(results: Sequence[RequestResult], health: ModelHealth) -> dict[str, Interval]:
    """Bootstrap intervals of every figure the aggregate has (see the module doc)."""
    groups = list(_locality_means(results))
    columns = {
        "efficacy_accuracy": [r.efficacy_accuracy for r in results],
        "efficacy_score": [r.efficacy_score for r in results],
        "generality_accuracy": [r.generality_accuracy for r in results],
        "generality_score": [r.generality_score for r in results],
        "locality_score": [r.locality_score for r in results],
        **{f"locality.{g}": [r.locality.get(g) for r in results] for g in groups},
    }
    found = {name: mean_interval(values, INTERVAL_SEED) for name, values in columns.items()}
    table = {name: np.array([np.nan if v is None else v for v in values], dtype=float)
             for name, values in columns.items()}

    def resampled(name: str, rows: np.ndarray) -> float | None:
        values = table[name][rows]
        values = values[~np.isnan(values)]
        return float(values.mean()) if len(values) else None

    def locality_mean(rows: np.ndarray) -> float | None:
        means = [resampled(f"locality.{g}", rows) for g in groups]
        present = [m for m in means if m is not None]
        return sum(present) / len(present) if present else None

    def average(rows: np.ndarray) -> float | None:
        generality, locality = resampled("generality_accuracy", rows), locality_mean(rows)
        if generality is None or locality is None:
            return None
        return ((resampled("efficacy_accuracy", rows) + generality) / 2 + locality) / 2

    if groups:
        found["locality_mean"] = bootstrap_interval(len(results), locality_mean, INTERVAL_SEED)
        found["average"] = bootstrap_interval(len(results), average, INTERVAL_SEED)
    if health.fluency_samples:
        found["fluency"] = mean_interval([s.fluency for s in health.fluency_samples], INTERVAL_SEED)
    if health.perplexity_change_interval is not None:
        found["perplexity_change"] = health.perplexity_change_interval
    return {name: interval for name, interval in found.items() if interval is not None}


def combine_health(steps: Sequence[ModelHealth]) -> ModelHealth:
    """Fluency pooled over all generations (every sample kept), perplexity and its change
    interval averaged over steps, retrieval shares pooled over all queries."""
    texts = sum(step.fluency_texts for step in steps)
    fluent = [step for step in steps if step.fluency_texts and step.fluency is not None]
    fluency = (sum(step.fluency * step.fluency_texts for step in fluent) / texts
               if fluent else None)
    return ModelHealth(
        fluency=fluency,
        fluency_texts=texts,
        perplexity_after=_mean_present([step.perplexity_after for step in steps]),
        retrieval=combine_retrieval([step.retrieval for step in steps if step.retrieval]),
        fluency_samples=tuple(sample for step in steps for sample in step.fluency_samples),
        perplexity_change_interval=_mean_interval(
            [step.perplexity_change_interval for step in steps]),
    )


def _mean_interval(intervals: Sequence[Interval | None]) -> Interval | None:
    present = [interval for interval in intervals if interval is not None]
    if not present:
        return None
    return (_mean([low for low, _ in present]), _mean([high for _, high in present]))


def combine_retrieval(summaries: Sequence[RetrievalSummary]) -> RetrievalSummary | None:
    """Pool shares by their query counts: correct/wrong/none over edit queries, unwanted over
    locality queries."""
    if not summaries:
        return None

    def pooled(share: str, count: str) -> float | None:
        total = sum(getattr(s, count) for s in summaries)
        if not total:
            return None
        return sum(getattr(s, share) * getattr(s, count) for s in summaries if getattr(s, count)) / total

    return RetrievalSummary(
        correct=pooled("correct", "edit_queries"),
        wrong=pooled("wrong", "edit_queries"),
        none=pooled("none", "edit_queries"),
        unwanted=pooled("unwanted", "locality_queries"),
        edit_queries=sum(s.edit_queries for s in summaries),
        locality_queries=sum(s.locality_queries for s in summaries),
    )


def _locality_means(results: Sequence[RequestResult]) -> dict[str, float]:
    """Per-group mean over the requests that have the group, groups in first-seen order."""
    by_group: dict[str, list[float]] = {}
    for result in results:
        for group, value in result.locality.items():
            by_group.setdefault(group, []).append(value)
    return {group: _mean(values) for group, values in by_group.items()}


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def _mean_present(values: Sequence[float | None]) -> float | None:
    present = [value for value in values if value is not None]
    return _mean(present) if present else None
