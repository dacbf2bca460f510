"""The edits a comparison runs on: drawn once with a seed, then given unchanged to every editor.

An `EditSet` carries its provenance (benchmark, split, file hash, seed) so every result record
made from it can name exactly which records were edited.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Sequence

from data.batches import BatchError, random_batch
from data.benchmarks import BENCHMARKS, load_benchmark, shipped_file
from data.field_maps import FieldMap
from data.requests import EditRequest, LocalityProbe
from experiments.environment import file_sha256
from experiments.records import DatasetInfo


@dataclass(frozen=True)
class EditSet:
    """Requests in the order they are applied, with where they came from and the seed."""

    requests: tuple[EditRequest, ...]
    dataset: DatasetInfo
    seed: int

    @property
    def record_indices(self) -> tuple[int | None, ...]:
        return tuple(request.metadata.get("index") for request in self.requests)


# Long-form targets (explanations of 100+ tokens, e.g. MedFE/MedLaSA) are scored teacher-forced
# over all their tokens up to this cut; it bounds the cost of editing and scoring one request.
MAX_TARGET_TOKENS = 128


def draw_edits(benchmark: str, n: int, seed: int, split: str | None = None,
               fields: FieldMap | None = None, asked_by: str | None = None) -> EditSet:
    """n requests drawn uniformly (seeded) from a shipped benchmark split or a benchmark file
    (read through the field map `fields` when given).

    Raises `BenchmarkError` for an unknown name or a bad file/record and `BatchError` when n is
    not between 1 and the number of requests available (both one-sentence `UsageError`s); the
    latter starts with `asked_by`, the options that asked for n (e.g. "--batch 50").
    """
    requests = load_benchmark(benchmark, split, fields)
    if benchmark in BENCHMARKS:
        chosen_split = split or BENCHMARKS[benchmark].default_split
        path = shipped_file(benchmark, chosen_split)
        dataset = DatasetInfo(benchmark, chosen_split, f"shipped:{benchmark}/{path.name}",
                              file_sha256(path))
    else:
        path = Path(benchmark)
        dataset = DatasetInfo(str(requests[0].metadata["benchmark"]), None, str(path),
                              file_sha256(path))
    try:
        drawn = random_batch(requests, n, seed)
    except BatchError as error:
        raise BatchError(f"{asked_by}: {error}" if asked_by else str(error)) from None
    return EditSet(tuple(drawn), dataset, seed)


def edit_set_of(requests: Sequence[EditRequest], label: str, seed: int = 0) -> EditSet:
    """An edit set of requests built in memory (hand-made, or derived such as same-subject
    sets); the hash is of the requests' canonical JSON since there is no file to hash."""
    canonical = json.dumps([asdict(request) for request in requests], sort_keys=True, default=str)
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    return EditSet(tuple(requests), DatasetInfo(label, None, None, digest), seed)


@dataclass(frozen=True)
class TargetCuts:
    """How many target_new/target_true texts and locality answers `cut_targets` shortened."""

    targets: int
    locality_answers: int


def cut_targets(requests: Sequence[EditRequest], tok: Any,
                max_tokens: int = MAX_TARGET_TOKENS) -> tuple[tuple[EditRequest, ...], TargetCuts]:
    """The requests with every target_new, target_true and locality answer longer than
    `max_tokens` tokens (as the scorer tokenises a target: a leading space, no special tokens)
    cut to its first `max_tokens` tokens, and how many were cut."""
    counts = {"targets": 0, "answers": 0}

    def cut(text: str | None, kind: str) -> str | None:
        if text is None:
            return None
        ids = tok(" " + text.lstrip(), add_special_tokens=False)["input_ids"]
        if len(ids) <= max_tokens:
            return text
        counts[kind] += 1
        keep = max_tokens
        # Decoding and re-encoding a cut can merge differently at its end; shorten until the
        # scorer will see at most `max_tokens` tokens.
        while True:
            shorter = tok.decode(ids[:keep]).strip()
            if len(tok(" " + shorter, add_special_tokens=False)["input_ids"]) <= max_tokens or keep == 1:
                return shorter
            keep -= 1

    cut_requests = tuple(
        replace(request, target_new=cut(request.target_new, "targets"),
                target_true=cut(request.target_true, "targets"),
                locality={group: tuple(LocalityProbe(probe.prompt, cut(probe.ground_truth, "answers"))
                                       for probe in probes)
                          for group, probes in request.locality.items()})
        for request in requests
    )
    return cut_requests, TargetCuts(counts["targets"], counts["answers"])


def cut_long_targets(edits: EditSet, tok: Any, max_tokens: int = MAX_TARGET_TOKENS) -> EditSet:
    """`cut_targets` on an edit set; the counts (and how many requests have no old target) go
    into its `dataset`, so every record and report made from it says what was cut and absent."""
    requests, cuts = cut_targets(edits.requests, tok, max_tokens)
    dataset = replace(edits.dataset, max_target_tokens=max_tokens, targets_cut=cuts.targets,
                      locality_answers_cut=cuts.locality_answers,
                      without_target_true=sum(request.target_true is None for request in requests))
    return EditSet(requests, dataset, edits.seed)
