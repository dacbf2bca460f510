"""The quick scores and the ranked table the tuning scripts (`tune_memit`, `tune_editor`,
`same_subject`) share: efficacy and generality as teacher-forced token accuracy and
P(new) > P(old), locality as argmax agreement with the unedited model on the neighbourhood
probes. They skip the harness's fluency and perplexity, which a grid search cannot afford."""

from __future__ import annotations

from typing import Any, Sequence

from rich.table import Table

from data.requests import EditRequest
from experiments.console import console
from metrics.average import average_score
from metrics.efficacy import efficacy_score, token_accuracy
from metrics.locality import locality_agreement


def efficacy_and_generality(scorer, requests: Sequence[EditRequest]) -> dict[str, float]:
    """Token accuracy and P(new) > P(old) on the edit prompts and on their first rephrasings."""
    prompts = [r.prompt for r in requests]
    rephrased = [r.rephrase_prompts[0] for r in requests]
    new = scorer.score(prompts, [r.target_new for r in requests])
    old = scorer.score(prompts, [r.target_true for r in requests])
    new_g = scorer.score(rephrased, [r.target_new for r in requests])
    old_g = scorer.score(rephrased, [r.target_true for r in requests])
    return {
        "efficacy_accuracy": token_accuracy(new),
        "efficacy_score": efficacy_score(new, old),
        "generality_accuracy": token_accuracy(new_g),
        "generality_score": efficacy_score(new_g, old_g),
    }


def edit_scores(scorer, requests: Sequence[EditRequest], unedited_locality) -> dict[str, float]:
    """`efficacy_and_generality`, locality against `unedited_locality`, and their MedREK average."""
    result = efficacy_and_generality(scorer, requests)
    locality = locality_agreement([s.argmax_ids for s in locality_scores(scorer, requests)], unedited_locality)
    result["locality"] = locality
    result["average"] = average_score(result["efficacy_accuracy"], result["generality_accuracy"], [locality])
    return result


def locality_scores(scorer, requests: Sequence[EditRequest]):
    """Scores of every locality probe of `requests`, all groups (CounterFact has one, MedCF++ four)."""
    probes = [probe for r in requests for group in r.locality.values() for probe in group]
    return scorer.score([p.prompt for p in probes], [p.ground_truth for p in probes])


def scores_then_undo(applied, scorer, requests: Sequence[EditRequest], unedited_locality) -> dict[str, float]:
    """`edit_scores` of an applied edit, which is undone whatever happens, so the next grid
    point starts from the unedited model."""
    try:
        return edit_scores(scorer, requests, unedited_locality)
    finally:
        applied.undo()


def print_ranked_table(title: str, rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> None:
    """The rows, best average first, as one table on stdout."""
    table = Table(title=title)
    for column in columns:
        table.add_column(column.replace("_", " "), justify="right")
    for row in sorted(rows, key=lambda r: -r["average"]):
        table.add_row(*(cell(row[c]) for c in columns))
    console().print(table)


def cell(value) -> str:
    if value is None:
        return "-"
    return value if isinstance(value, str) else f"{value:.3g}"
