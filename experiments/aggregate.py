"""Combine per-request scores and per-step model health into `Aggregate`s (pure arithmetic).

Every request weighs the same, whatever its number of rephrasings or probes, as in the MedREK
and RECIPE evaluation code. A score that some requests cannot have (efficacy score without
`target_true`, generality without rephrasings, a locality group a record lacks) is averaged
over the requests that have it, and is None when none has it.
"""

from __future__ import annotations

from typing import Sequence

from experiments.records import Aggregate, ModelHealth, RequestResult, RetrievalSummary
from metrics import average_score, mean_locality


def aggregate(results: Sequence[RequestResult], health: Sequence[ModelHealth]) -> Aggregate:
    """The aggregate of `results` scored under the steps whose health is given."""
    if not results:
        raise ValueError("aggregate needs at least one request result.")
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
        health=combine_health(health),
    )


def combine_health(steps: Sequence[ModelHealth]) -> ModelHealth:
    """Fluency pooled over all generations, perplexity averaged over steps, retrieval shares
    pooled over all queries."""
    texts = sum(step.fluency_texts for step in steps)
    fluent = [step for step in steps if step.fluency_texts and step.fluency is not None]
    fluency = (sum(step.fluency * step.fluency_texts for step in fluent) / texts
               if fluent else None)
    return ModelHealth(
        fluency=fluency,
        fluency_texts=texts,
        perplexity_after=_mean_present([step.perplexity_after for step in steps]),
        retrieval=combine_retrieval([step.retrieval for step in steps if step.retrieval]),
    )


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
