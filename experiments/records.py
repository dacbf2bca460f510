"""Result records of a harness run: per request, per scoring step and for the whole run.

They are plain frozen dataclasses that turn into JSON-ready dicts and back, and they are the
only input report rendering needs. Everything that depends on the machine's speed lives in
`RunRecord.timings` (and nowhere else), so two runs with the same seed can be compared byte
for byte with `to_json(include_timings=False)`.

Scores are fractions in [0, 1] (reports multiply by 100); fluency is on the papers' ×100 scale.
A score is None when the data has nothing to measure it on (e.g. no `target_true`, so no
efficacy score), never NaN, so the JSON stays strict.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from data.corpus import CORPUS_NAMES
from experiments.errors import HarnessError
from lm.files import atomic_path

RECORD_FORMAT = 1


@dataclass(frozen=True)
class RequestResult:
    """How one edit request scored at one scoring step.

    `efficacy_*` are measured on the edit prompt, `generality_*` on the rephrasings (mean over
    them). `*_accuracy` is convention (a), teacher-forced target token accuracy; `*_score` is
    convention (b), the share of prompts where P(target_new) > P(target_true). `locality` maps
    each probe group to the agreement of the edited model's argmax with the unedited model's.
    """

    record_index: int | None  # position in the benchmark file (None for hand-made requests)
    efficacy_accuracy: float
    efficacy_score: float | None
    generality_accuracy: float | None
    generality_score: float | None
    locality: dict[str, float]


@dataclass(frozen=True)
class RetrievalSummary:
    """Retrieval outcome shares (see `metrics.retrieval_rates`); None where no query of a kind."""

    correct: float | None
    wrong: float | None
    none: float | None
    unwanted: float | None
    edit_queries: int
    locality_queries: int


@dataclass(frozen=True)
class ModelHealth:
    """What one scoring step measured beyond the requests themselves."""

    fluency: float | None  # mean n-gram entropy ×100 over `fluency_texts` generations
    fluency_texts: int
    perplexity_after: float | None  # None when perplexity is switched off
    retrieval: RetrievalSummary | None  # None unless the edit exposes retrieval outcomes


@dataclass(frozen=True)
class Aggregate:
    """Request scores averaged over requests (each weighs the same) plus model health.

    `locality` holds the per-group means (MedCF: td, em, ss, ts), `locality_mean` their
    unweighted mean, `average` MedREK's eq. 13 on the token-accuracy convention.
    """

    requests: int
    efficacy_accuracy: float
    efficacy_score: float | None
    generality_accuracy: float | None
    generality_score: float | None
    locality: dict[str, float]
    locality_mean: float | None
    average: float | None
    health: ModelHealth


@dataclass(frozen=True)
class Validation:
    """The batch validator's findings for the edits live during one scoring step."""

    requests: int
    locality_overlaps: int
    self_overlaps: int
    contradictory_records: int
    ceiling_efficacy: float
    ceiling_locality: dict[str, float]
    ceiling_sentence: str


@dataclass(frozen=True)
class StepResult:
    """One apply-and-score step: the batch applied, the validation of what was live, and the
    scores of the requests scored (the batch itself, or everything edited so far)."""

    step: int
    applied_indices: tuple[int | None, ...]
    validation: Validation
    requests: tuple[RequestResult, ...]
    aggregate: Aggregate


@dataclass(frozen=True)
class DatasetInfo:
    """Where the edits came from. `file` is `shipped:<name>/<split>.json.gz`, a user path, or
    None for requests built in memory, whose `sha256` is then of their canonical JSON."""

    benchmark: str
    split: str | None
    file: str | None
    sha256: str
    # What `experiments.edit_sets.cut_long_targets` did to the requests (absent from records
    # written before it existed): the token cut (None: none applied), how many targets
    # (target_new or target_true) and locality answers it cut, and how many requests have no
    # old target (their P(new) > P(old) scores are absent).
    max_target_tokens: int | None = None
    targets_cut: int = 0
    locality_answers_cut: int = 0
    without_target_true: int = 0


@dataclass(frozen=True)
class ModelInfo:
    fingerprint: str  # lm.loading.model_fingerprint, taken before any edit
    model_type: str
    parameters: int


@dataclass(frozen=True)
class Settings:
    """Run settings that change the numbers; the defaults keep a CPU run short, and the record
    carries them so a reader knows what was measured (the papers generate 100 new tokens)."""

    fluency_prompts: int = 20  # at most this many edit prompts per step are continued (0: off)
    fluency_new_tokens: int = 40  # greedy new tokens per continuation
    perplexity_tokens: int = 1024  # held-out target tokens per perplexity (0: off)
    perplexity_corpus: str = "wikitext2-test"

    def __post_init__(self) -> None:
        if self.fluency_prompts < 0:
            raise HarnessError(f"fluency_prompts must be 0 or more, not {self.fluency_prompts}.")
        if self.fluency_new_tokens < 1:
            raise HarnessError(f"fluency_new_tokens must be at least 1, not {self.fluency_new_tokens}.")
        if self.perplexity_tokens < 0:
            raise HarnessError(f"perplexity_tokens must be 0 or more, not {self.perplexity_tokens}.")
        if self.perplexity_corpus not in CORPUS_NAMES:
            raise HarnessError(
                f"Unknown perplexity corpus {self.perplexity_corpus!r}; choose one of "
                f"{', '.join(CORPUS_NAMES)}."
            )


@dataclass(frozen=True)
class StepTiming:
    """Seconds of one step. `edit_seconds` is the apply's measured wall time; `reused_seconds`
    is what the optimised values the editor took from the value cache (`editors.value_cache`)
    cost when another run computed them. Tables and reports charge an edit both
    (`edit_cost_seconds`), so an editor never looks faster for running after another one."""

    edit_seconds: float
    scoring_seconds: float
    undo_seconds: float  # 0.0 for sequential steps, whose undo happens at the end
    reused_seconds: float = 0.0  # absent from records written before the value cache: 0.0

    @property
    def edit_cost_seconds(self) -> float:
        return self.edit_seconds + self.reused_seconds


@dataclass(frozen=True)
class Timings:
    """Wall-clock seconds; the only part of a record that may differ between identical runs."""

    steps: tuple[StepTiming, ...]
    baseline_seconds: float  # unedited predictions and perplexity (near 0 when cached)
    final_undo_seconds: float  # sequential mode: undoing every batch in reverse order
    total_seconds: float

    @property
    def edit_seconds(self) -> float:
        """Measured wall time of every apply."""
        return sum(step.edit_seconds for step in self.steps)

    @property
    def edit_cost_seconds(self) -> float:
        """Measured wall time plus the original cost of reused values: what reports show."""
        return sum(step.edit_cost_seconds for step in self.steps)


@dataclass(frozen=True)
class RunRecord:
    """Everything one harness run produced, and everything needed to reproduce it."""

    format: int
    mode: str  # "single", "batch" or "sequential"
    batch_size: int
    editor: str
    hparams: dict[str, Any] | None
    model: ModelInfo
    seed: int
    dataset: DatasetInfo
    record_indices: tuple[int | None, ...]
    settings: Settings
    versions: dict[str, str]
    perplexity_before: float | None
    steps: tuple[StepResult, ...]
    aggregate: Aggregate  # single/batch: over all steps; sequential: after the last step
    timings: Timings

    def to_dict(self, include_timings: bool = True) -> dict[str, Any]:
        record = dataclasses.asdict(self)
        if not include_timings:
            del record["timings"]
        return record

    def to_json(self, include_timings: bool = True) -> str:
        """Canonical JSON (sorted keys, strict: a NaN would raise rather than be written)."""
        return json.dumps(self.to_dict(include_timings), indent=2, sort_keys=True, allow_nan=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunRecord:
        return _build(cls, data)


def _build(annotation: Any, value: Any) -> Any:
    """Rebuild a value of the annotated type from its JSON form (lists back into tuples,
    dicts back into dataclasses), following the dataclasses' type hints. A field added later
    with a default (e.g. `StepTiming.reused_seconds`) may be absent: older records stay
    readable under the same format number; every other field is required."""
    if value is None:
        return None
    if dataclasses.is_dataclass(annotation):
        hints = typing.get_type_hints(annotation)
        return annotation(**{
            field.name: _build(hints[field.name], value[field.name])
            for field in dataclasses.fields(annotation)
            if field.name in value or field.default is dataclasses.MISSING
        })
    origin = typing.get_origin(annotation)
    arguments = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        # Optional[X]: the value is not None here, so it is an X.
        (inner,) = [argument for argument in arguments if argument is not type(None)]
        return _build(inner, value)
    if origin is tuple:
        return tuple(_build(arguments[0], item) for item in value)
    if origin is dict:
        return {key: _build(arguments[1], item) for key, item in value.items()}
    return value


def write_record(path: str | Path, record: RunRecord) -> None:
    """Write a record as canonical JSON, atomically (no half-written file on interruption)."""
    with atomic_path(Path(path)) as tmp:
        tmp.write_text(record.to_json() + "\n")


def read_record(path: str | Path) -> RunRecord:
    return RunRecord.from_dict(json.loads(Path(path).read_text()))
