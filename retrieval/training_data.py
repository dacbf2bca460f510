"""What retrieval networks are trained and validated on: the *train* splits only.

CounterFact, MedCF++ and MedVersa train splits, each with a seeded held-out part for
validation (checkpoint selection); test splits are never read here. Locality probes whose
prompt is also an edit or rephrase prompt in the same part are dropped: such a probe asks the
retriever both to fetch an entry and to fetch nothing for the same text (4.5–15 % of MedCF++
probes), which only teaches it noise.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass
from typing import Mapping, Sequence

from data.benchmarks import load_benchmark
from data.validation import validate_batch
from data.requests import EditRequest
from retrieval.network import statement_text

TRAINING_BENCHMARKS = ("counterfact", "medcfpp", "medversa")


@dataclass(frozen=True)
class TrainingData:
    """Per benchmark: records to train on and held-out records to validate on."""

    train: Mapping[str, tuple[EditRequest, ...]]
    validation: Mapping[str, tuple[EditRequest, ...]]

    def texts(self, statements_only: bool = False) -> set[str]:
        """Every text a network may encode for these records (question, statement, rephrasings,
        locality prompts), for precomputing encoder features. Training only the prompt path
        needs the statements alone (a sixth of the texts, hence of the encoding time)."""
        found = set()
        for part in (self.train, self.validation):
            for requests in part.values():
                for request in requests:
                    found.add(statement_text(request))
                    if statements_only:
                        continue
                    found.add(request.prompt)
                    found.update(request.rephrase_prompts)
                    found.update(probe.prompt for probes in request.locality.values() for probe in probes)
        return found

    def validation_batches(self, size: int) -> dict[str, tuple[EditRequest, ...]]:
        """Per benchmark, the first `size` held-out records with confounded ones excluded
        (data.validation), so a validation score is not capped by the data."""
        return {
            name: validate_batch(requests[:size], "exclude").requests
            for name, requests in self.validation.items()
        }


def load_training_data(
    benchmarks: Sequence[str] = TRAINING_BENCHMARKS,
    validation_size: int = 150,
    seed: int = 0,
    limit: int | None = None,
) -> TrainingData:
    """Train splits of `benchmarks`, `validation_size` records of each held out (seeded).

    `limit` caps the records kept per benchmark (for smoke runs).
    """
    train, validation = {}, {}
    for name in benchmarks:
        requests = load_benchmark(name, "train")
        order = list(range(len(requests)))
        random.Random(f"{seed}:{name}").shuffle(order)
        if limit is not None:
            order = order[:limit]
        held_out = sorted(order[:validation_size])
        kept = sorted(order[validation_size:])
        if not kept:
            raise ValueError(
                f"Benchmark {name!r} has no records left to train on after holding out {validation_size}."
            )
        train[name] = without_confounded_probes([requests[i] for i in kept])
        validation[name] = without_confounded_probes([requests[i] for i in held_out])
    return TrainingData(train, validation)


def without_confounded_probes(requests: Sequence[EditRequest]) -> tuple[EditRequest, ...]:
    """The requests with every locality probe dropped whose prompt some request edits."""
    edited = {prompt for request in requests for prompt in (request.prompt, *request.rephrase_prompts)}
    cleaned = []
    for request in requests:
        locality = {
            group: tuple(probe for probe in probes if probe.prompt not in edited)
            for group, probes in request.locality.items()
        }
        cleaned.append(dataclasses.replace(
            request, locality={group: probes for group, probes in locality.items() if probes}
        ))
    return tuple(cleaned)
