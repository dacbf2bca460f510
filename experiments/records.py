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
from types import MappingProxyType
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from data.corpus import CORPUS_NAMES
from experiments.errors import HarnessError
from lm.files import atomic_path

# 2: fluency by seeded top-k sampling, perplexity in context, per-token "score", intervals.
# Format-1 records stay readable; their settings are filled with what format 1 measured.
RECORD_FORMAT = 2
FORMAT_1_SETTINGS = MappingProxyType({"fluency_top_k": 0, "perplexity_context_words": 1})
Interval = tuple[float, float]  # 95% bootstrap interval (low, high), see metrics.uncertainty


@dataclass(frozen=True)
class RequestResult:
    """How one edit request scored at one scoring step.

    `efficacy_*` are measured on the edit prompt, `generality_*` on the rephrasings (mean over
    them). `*_accuracy` is convention (a), teacher-forced target token accuracy; `*_score` is
    convention (b), MEMIT's "score": the share of prompts where the new target's mean per-token
    NLL is below the old target's. `locality` maps each probe group to the agreement of the
    edited model's argmax with the unedited model's; `locality_score` is MEMIT's "NS", the share
    of locality probes still preferring their own answer to target_new (per-token, as above).
    The scores need `target_true` and are None without it.
    """

    record_index: int | None  # position in the benchmark file (None for hand-made requests)
    efficacy_accuracy: float
    efficacy_score: float | None
    generality_accuracy: float | None
    generality_score: float | None
    locality: dict[str, float]
    locality_score: float | None = None  # absent from format-1 records


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
class FluencySample:
    """One fluency generation: the edit prompt, the sampled continuation (exactly `new_tokens`
    tokens) and the n-gram entropy ×100 of prompt + continuation."""

    prompt: str
    continuation: str
    new_tokens: int
    fluency: float


@dataclass(frozen=True)
class ModelHealth:
    """What one scoring step measured beyond the requests themselves."""

    fluency: float | None  # mean n-gram entropy ×100 over `fluency_texts` generations
    fluency_texts: int
    perplexity_after: float | None  # None when perplexity is switched off
    retrieval: RetrievalSummary | None  # None unless the edit exposes retrieval outcomes
    fluency_samples: tuple[FluencySample, ...] = ()  # every generation (format 2)
    perplexity_change_interval: Interval | None = None  # of after / before - 1, over pieces


@dataclass(frozen=True)
class Aggregate:
    """Request scores averaged over requests (each weighs the same) plus model health.

    `locality` holds the per-group means (MedCF: td, em, ss, ts), `locality_mean` their
    unweighted mean, `average` MedREK's eq. 13 on the token-accuracy convention.
    `intervals` maps a figure's field name (`efficacy_accuracy`, `locality.td`, `fluency`,
    `perplexity_change`, ...) to its 95% bootstrap interval over the edits (fluency: over the
    generations; perplexity: over the held-out pieces); see `experiments.aggregate`.
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
    locality_score: float | None = None  # MEMIT's NS, mean over requests that have it
    intervals: dict[str, Interval] = field(default_factory=dict)


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

    fluency_prompts: int = 50  # the run's first this many edit prompts are continued (0: off)
    fluency_new_tokens: int = 100  # sampled new tokens per continuation, exactly
    fluency_top_k: int = 5  # top-k sampling as ROME/MEMIT; 0: greedy until EOS (format 1)
    perplexity_tokens: int = 8192  # held-out target tokens per perplexity (0: off)
    perplexity_corpus: str = "wikitext2-test"
    perplexity_context_words: int = 16  # preceding words each piece is scored after (format 1: 1)

    def __post_init__(self) -> None:
        if self.fluency_prompts < 0:
            raise HarnessError(f"fluency_prompts must be 0 or more, not {self.fluency_prompts}.")
        if self.fluency_new_tokens < 1:
            raise HarnessError(f"fluency_new_tokens must be at least 1, not {self.fluency_new_tokens}.")
        if self.fluency_top_k < 0:
            raise HarnessError(f"fluency_top_k must be 0 or more, not {self.fluency_top_k}.")
        if self.perplexity_context_words < 1:
            raise HarnessError(
                f"perplexity_context_words must be at least 1, not {self.perplexity_context_words}.")
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
        if data.get("format") == 1 and isinstance(data.get("settings"), dict):
            data = {**data, "settings": {**FORMAT_1_SETTINGS, **data["settings"]}}
        return _build(cls, data)


class RecordTypeError(TypeError):
    """A record read from JSON holds a value of the wrong type (the message names the field)."""


def _build(annotation: Any, value: Any, where: str = "record") -> Any:
    """Rebuild a value of the annotated type from its JSON form (lists back into tuples,
    dicts back into dataclasses), following the dataclasses' type hints, and check every value
    against them on the way, so a field added to a record later is checked without more code.
    Raises RecordTypeError naming the field (`where`) and the expected type. A field added
    later with a default (e.g. `StepTiming.reused_seconds`) may be absent: older records stay
    readable under the same format number; every other field is required (KeyError)."""
    origin = typing.get_origin(annotation)
    arguments = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in arguments:
            return None
        alternatives = [argument for argument in arguments if argument is not type(None)]
        for alternative in alternatives[:-1]:
            try:
                return _build(alternative, value, where)
            except RecordTypeError:
                continue
        return _build(alternatives[-1], value, where)
    if annotation is Any:
        return value
    if dataclasses.is_dataclass(annotation):
        _expect(isinstance(value, dict), where, "an object", value)
        hints = typing.get_type_hints(annotation)
        return annotation(**{
            field.name: _build(hints[field.name], value[field.name], f"{where}.{field.name}")
            for field in dataclasses.fields(annotation)
            if field.name in value or _required(field)
        })
    if origin is tuple:
        # JSON gives lists; `to_dict()` (sent between processes) keeps the tuples.
        _expect(isinstance(value, (list, tuple)), where, "an array", value)
        if arguments[-1] is not Ellipsis:  # a fixed-length tuple, e.g. an Interval (low, high)
            _expect(len(value) == len(arguments), where, f"an array of {len(arguments)}", value)
            return tuple(_build(argument, item, f"{where}[{index}]")
                         for index, (argument, item) in enumerate(zip(arguments, value)))
        return tuple(_build(arguments[0], item, f"{where}[{index}]") for index, item in enumerate(value))
    if origin is dict:
        _expect(isinstance(value, dict), where, "an object", value)
        return {key: _build(arguments[1], item, f"{where}.{key}") for key, item in value.items()}
    expected = {str: "a string", int: "a whole number", float: "a number", bool: "true or false"}
    if annotation in expected:
        allowed = (int, float) if annotation is float else annotation  # JSON writes 2.0 as 2 too
        _expect(isinstance(value, allowed) and (annotation is bool or not isinstance(value, bool)),
                where, expected[annotation], value)
    return value


def _expect(condition: bool, where: str, expected: str, value: Any) -> None:
    if not condition:
        raise RecordTypeError(f"{where} must be {expected}, not {json.dumps(value)[:40]}")


def _required(field: dataclasses.Field) -> bool:
    return field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING


def write_record(path: str | Path, record: RunRecord) -> None:
    """Write a record as canonical JSON, atomically (no half-written file on interruption)."""
    with atomic_path(Path(path)) as tmp:
        tmp.write_text(record.to_json() + "\n")


def read_record(path: str | Path) -> RunRecord:
    return RunRecord.from_dict(json.loads(Path(path).read_text()))
