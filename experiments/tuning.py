"""Tuning a weight editor's hyper-parameters on a benchmark's train records (`editscope tune`).

The search is one pass of coordinate search over the few settings the editor declares
(`Hparams.tuning_axes`: λ or AlphaEdit's energy share, the layer window, the value learning rate
and step count), starting from the editor's defaults for the model and benchmark: every
candidate of the first axis is tried with the others at their current best, the best is kept,
then the next axis. Cheap axes come first (they only change the closed-form solve, so the
optimised values are reused from the value cache). Every trial is the editor's own `apply`
run by the harness (`run_batch`) on the same seeded draw of train records and scored by the
harness's metrics; fluency and perplexity are off, since no objective reads them.

Finished trials are kept in a JSON file beside the output; a rerun with the same setup reads
them instead of running them again, so an interrupted search continues where it stopped.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from editors.hparams import TuningAxis
from experiments.records import Aggregate
from lm.errors import UsageError
from lm.files import write_json_atomic

TRIALS_FORMAT = 1


def _mean(values: Sequence[float | None]) -> float | None:
    present = [value for value in values if value is not None]
    return sum(present) / len(present) if present else None


Metrics = Mapping[str, "float | None"]
# --objective name -> (what it is, the score of a run's mean metrics); higher is better.
OBJECTIVES: Mapping[str, tuple[str, Callable[[Metrics], "float | None"]]] = {
    "mean": ("mean of efficacy, generality and locality (token accuracy)",
             lambda m: _mean([m["efficacy_accuracy"], m["generality_accuracy"], m["locality_mean"]])),
    "average": ("MedREK's Avg (eq. 13), the tables' Avg column", lambda m: m["average"]),
    "efficacy": ("efficacy (token accuracy)", lambda m: m["efficacy_accuracy"]),
    "locality": ("locality (mean over probe groups)", lambda m: m["locality_mean"]),
}


class TrialsFileError(UsageError):
    """The trials file cannot be read, or belongs to another tuning setup."""


@dataclass(frozen=True)
class TuningSetup:
    """Everything that makes trial results comparable; a trials file is only reused for the same."""

    editor: str
    model_fingerprint: str
    benchmark: str
    split: str | None
    records: int
    seed: int
    record_indices: tuple[int | None, ...]
    start: dict[str, Any]  # the starting hyper-parameters (every field), so another start is another setup


@dataclass(frozen=True)
class Trial:
    settings: dict[str, Any]  # every searched field -> its value in this trial (JSON form)
    metrics: dict[str, float | None]  # the run's aggregate means; empty when the edit failed
    error: str | None = None

    def score(self, objective: str) -> float:
        if self.error is not None:
            return -math.inf
        value = OBJECTIVES[objective][1](self.metrics)
        return -math.inf if value is None else value


# The aggregate means a trial keeps (the objectives read them); intervals and health are not kept.
METRICS = ("efficacy_accuracy", "efficacy_score", "generality_accuracy", "generality_score", "locality_mean",
           "average")


def metrics_of(aggregate: Aggregate) -> dict[str, float | None]:
    return {name: getattr(aggregate, name) for name in METRICS}


def plain(value: Any) -> Any:
    """JSON form of a hyper-parameter value (tuples become lists)."""
    return list(value) if isinstance(value, tuple) else value


def trial_key(settings: Mapping[str, Any]) -> str:
    return json.dumps({name: plain(value) for name, value in settings.items()}, sort_keys=True)


class TrialLog:
    """Finished trials of one setup, kept in a JSON file rewritten atomically after each trial."""

    def __init__(self, path: Path, setup: TuningSetup):
        self.path, self.setup = path, setup
        self.trials: dict[str, Trial] = {}
        if path.exists():
            try:
                stored = json.loads(path.read_text())
                same = stored["format"] == TRIALS_FORMAT and stored["setup"] == json.loads(json.dumps(asdict(setup)))
                trials = {key: Trial(**trial) for key, trial in stored["trials"].items()} if same else None
            except (OSError, ValueError, KeyError, TypeError):
                raise TrialsFileError(f"{path} is not a trials file of `editscope tune`; move it or choose "
                                      "another --out.") from None
            if trials is None:
                raise TrialsFileError(f"{path} holds trials of another tuning setup (editor, model, benchmark, "
                                      "records or seed differ); move it or choose another --out.")
            self.trials = trials

    def get(self, settings: Mapping[str, Any]) -> Trial | None:
        return self.trials.get(trial_key(settings))

    def add(self, trial: Trial) -> None:
        self.trials[trial_key(trial.settings)] = trial
        write_json_atomic(self.path, {"format": TRIALS_FORMAT, "setup": asdict(self.setup),
                                      "trials": {key: asdict(t) for key, t in self.trials.items()}})


def planned_trials(axes: Sequence[TuningAxis]) -> int:
    """Trials of one coordinate pass at most (repeats of a setting are run once)."""
    return 1 + sum(len(axis.values) - 1 for axis in axes)


def coordinate_search(axes: Sequence[TuningAxis], run: Callable[[dict[str, Any]], Trial], log: TrialLog,
                      objective: str, on_trial: Callable[[int, dict[str, Any], bool], None] | None = None,
                      ) -> tuple[Trial, list[Trial]]:
    """One pass over `axes` (each axis's first value is the starting point); `run(settings)`
    runs a trial not found in `log`. Returns the best trial and every trial in the order met.
    `on_trial(number, settings, reused)` is told before each trial."""
    best_settings = {axis.field: plain(axis.values[0]) for axis in axes}
    seen: list[Trial] = []

    def trial(settings: dict[str, Any]) -> Trial:
        known = log.get(settings)
        if on_trial:
            on_trial(len(seen) + 1, settings, known is not None)
        if known is None:
            known = run(settings)
            log.add(known)
        seen.append(known)
        return known

    best = trial(best_settings)
    for axis in axes:
        for value in axis.values[1:]:
            candidate = {**best.settings, axis.field: plain(value)}
            if any(trial_key(t.settings) == trial_key(candidate) for t in seen):
                continue
            result = trial(candidate)
            if result.score(objective) > best.score(objective):
                best = result
    return best, seen
