"""The edits a comparison runs on: drawn once with a seed, then given unchanged to every editor.

An `EditSet` carries its provenance (benchmark, split, file hash, seed) so every result record
made from it can name exactly which records were edited.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

from data.batches import BatchError, random_batch
from data.benchmarks import BENCHMARKS, load_benchmark, shipped_file
from data.requests import EditRequest
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


def draw_edits(benchmark: str, n: int, seed: int, split: str | None = None,
               asked_by: str | None = None) -> EditSet:
    """n requests drawn uniformly (seeded) from a shipped benchmark split or a benchmark file.

    Raises `BenchmarkError` for an unknown name or a bad file/record and `BatchError` when n is
    not between 1 and the number of requests available (both one-sentence `UsageError`s); the
    latter starts with `asked_by`, the options that asked for n (e.g. "--batch 50").
    """
    requests = load_benchmark(benchmark, split)
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
