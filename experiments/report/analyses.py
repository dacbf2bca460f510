"""The command-specific extras of a report (`Report.analyses`) that the renderer understands.

`analyses` is a JSON object. These keys have a meaning; any other key is shown verbatim, as
sorted JSON, under "Further analyses":

- `"run_labels"`: one entry per run, in the order of `runs`: a short string or null. The
  stress command labels the two halves of a same-subject experiment `SAME_SUBJECT` and
  `DISTINCT_SUBJECT`; the "Which method?" rules pair runs by exactly these two labels (same
  editor, benchmark, mode and batch size). Any other label is only shown beside its run.
- `"akd"`: a list of `{"run_index": i, "step": s, "layer": l, "akd": value or null}`, the
  Average Key Distance of the batch of step `s` (`StepResult.step`) of `runs[i]` (0-based) at
  layer `l`. `akd_entries` writes them from `metrics.average_key_distance_per_layer`.
- `"correlations"`: a list of `{"x": name, "y": name, "rho": ..., "p": ..., "n": ...,
  "reason": ...}`, e.g. Spearman's rho of AKD against efficacy; `correlation_entry` writes one
  from a `metrics.RankCorrelation`.

JSON has no NaN, so an undefined value (an AKD of a one-edit batch) is null.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from experiments.records import RunRecord
from experiments.report.errors import ReportError

SAME_SUBJECT = "same-subject"
DISTINCT_SUBJECT = "distinct-subject"
KNOWN_KEYS = ("run_labels", "akd", "correlations")


@dataclass(frozen=True)
class AkdPoint:
    run_index: int
    step: int
    layer: int
    akd: float | None


@dataclass(frozen=True)
class Correlation:
    x: str
    y: str
    rho: float | None
    p: float | None
    n: int
    reason: str


def akd_entries(run_index: int, step: int, per_layer: Mapping[int, float]) -> list[dict[str, Any]]:
    """`analyses["akd"]` entries for one step's per-layer AKD values (NaN written as null)."""
    return [{"run_index": run_index, "step": step, "layer": int(layer), "akd": _finite_or_none(value)}
            for layer, value in sorted(per_layer.items())]


def correlation_entry(x: str, y: str, result: Any) -> dict[str, Any]:
    """An `analyses["correlations"]` entry from a `metrics.RankCorrelation` (rho, p, n, reason)."""
    return {"x": x, "y": y, "rho": _finite_or_none(result.rho), "p": _finite_or_none(result.p),
            "n": int(result.n), "reason": str(result.reason)}


def check_analyses(analyses: Mapping[str, Any], runs: Sequence[RunRecord]) -> None:
    """Raise ReportError if a known key of `analyses` is malformed or refers to a missing run."""
    run_labels(analyses, runs)
    akd_points(analyses, runs)
    correlations(analyses)


def run_labels(analyses: Mapping[str, Any], runs: Sequence[RunRecord]) -> tuple[str | None, ...]:
    """One label (or None) per run; all None when the report labels no run."""
    labels = analyses.get("run_labels")
    if labels is None:
        return (None,) * len(runs)
    if not isinstance(labels, list) or len(labels) != len(runs):
        raise ReportError(f"analyses.run_labels must be a list with one entry per run ({len(runs)}).")
    for index, label in enumerate(labels):
        if label is not None and not isinstance(label, str):
            raise ReportError(f"analyses.run_labels[{index}] must be a string or null.")
    return tuple(labels)


def akd_points(analyses: Mapping[str, Any], runs: Sequence[RunRecord]) -> tuple[AkdPoint, ...]:
    entries = _entry_list(analyses, "akd")
    points = []
    for index, entry in enumerate(entries):
        where = f"analyses.akd[{index}]"
        run_index = _integer(entry, "run_index", where)
        step = _integer(entry, "step", where)
        if not 0 <= run_index < len(runs):
            raise ReportError(f"{where}: run_index {run_index} is not one of the {len(runs)} runs.")
        if step not in {s.step for s in runs[run_index].steps}:
            raise ReportError(f"{where}: run {run_index} has no step {step}.")
        points.append(AkdPoint(run_index, step, _integer(entry, "layer", where),
                               _optional_number(entry, "akd", where)))
    return tuple(points)


def correlations(analyses: Mapping[str, Any]) -> tuple[Correlation, ...]:
    found = []
    for index, entry in enumerate(_entry_list(analyses, "correlations")):
        where = f"analyses.correlations[{index}]"
        names = [entry.get(key) for key in ("x", "y")]
        if not all(isinstance(name, str) for name in names):
            raise ReportError(f"{where} needs string fields 'x' and 'y'.")
        found.append(Correlation(
            x=names[0], y=names[1],
            rho=_optional_number(entry, "rho", where), p=_optional_number(entry, "p", where),
            n=_integer(entry, "n", where), reason=str(entry.get("reason", "")),
        ))
    return tuple(found)


def other_analyses(analyses: Mapping[str, Any]) -> dict[str, Any]:
    """The analyses the renderer has no dedicated section for."""
    return {key: value for key, value in analyses.items() if key not in KNOWN_KEYS}


def _entry_list(analyses: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    entries = analyses.get(key, [])
    if not isinstance(entries, list) or not all(isinstance(entry, dict) for entry in entries):
        raise ReportError(f"analyses.{key} must be a list of JSON objects.")
    return entries


def _integer(entry: Mapping[str, Any], key: str, where: str) -> int:
    value = entry.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ReportError(f"{where} needs an integer field {key!r}.")
    return value


def _optional_number(entry: Mapping[str, Any], key: str, where: str) -> float | None:
    value = entry.get(key)
    if value is None:
        return None
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise ReportError(f"{where}: field {key!r} must be a number or null.")
    return float(value)


def _finite_or_none(value: float) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None
