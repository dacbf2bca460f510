"""Seeded batch builders: random batches, same-/distinct-subject sets, natural subject groups.

Every builder draws from its own `random.Random(seed)`, so a batch depends only on its inputs
and never on (or changes) global random state. Check a built batch with `validate_batch`
(from `data.validation`, re-exported here because the two are used together).
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass, replace
from typing import Sequence

from data.relations import RelationIndex, infer_relations
from data.validation import ValidationResult, validate_batch
from data.requests import EditRequest
from lm.errors import UsageError

__all__ = [
    "BatchError", "SubjectSetPair", "ValidationResult", "natural_group_batch",
    "natural_same_subject_groups", "random_batch", "same_and_distinct_subject_sets", "unconfounded_batch",
    "validate_batch", "with_subject",
]


class BatchError(UsageError):
    """A batch cannot be built as asked (one sentence says why)."""


def random_batch(requests: Sequence[EditRequest], n: int, seed: int) -> list[EditRequest]:
    """n distinct requests drawn uniformly without replacement."""
    _check_size(n, len(requests), "requests")
    return random.Random(seed).sample(list(requests), n)


def unconfounded_batch(requests: Sequence[EditRequest], n: int, seed: int) -> list[EditRequest]:
    """n requests in a seeded random order, skipping any that would confound the ones already
    drawn (a locality probe equal to an edited prompt, or one prompt with two targets), so the
    batch passes `validate_batch` clean and still has exactly n edits."""
    _check_size(n, len(requests), "requests")
    order = random.Random(seed).sample(list(requests), len(requests))
    batch: list[EditRequest] = []
    for candidate in order:
        found = validate_batch([*batch, candidate])
        if not (found.locality_overlaps or found.self_overlaps or found.contradictory_groups):
            batch.append(candidate)
            if len(batch) == n:
                return batch
    raise BatchError(f"Only {len(batch)} of the {len(requests)} requests can be drawn without confounding "
                     f"each other; ask for at most {len(batch)}.")


@dataclass(frozen=True)
class SubjectSetPair:
    """The same n facts twice: with their own subjects, and all given one shared subject.

    Position i of both sets is the same record, with relation `relations[i]`.
    """

    same_subject: tuple[EditRequest, ...]
    distinct_subject: tuple[EditRequest, ...]
    relations: tuple[str, ...]


def same_and_distinct_subject_sets(
    requests: Sequence[EditRequest],
    n: int,
    seed: int,
    subject: str = "John Smith",
    relations: RelationIndex | None = None,
) -> SubjectSetPair:
    """MEMIT-Merge's paired sets: n records of n different relations and n different subjects.

    Relations are inferred from `requests` unless an index is given; for CounterFact pass
    `infer_relations(train + test)` (see data.relations for why). n is capped by the number
    of relations, since one name with two facts of one relation is a contradiction.
    """
    if not subject.strip():
        raise BatchError("The shared subject must be a non-empty name.")
    for index, request in enumerate(requests):
        if request.subject is None or request.subject not in request.prompt:
            raise BatchError(f"Request {index} has no subject span in its prompt to replace.")
    relations = infer_relations(requests) if relations is None else relations
    by_relation = defaultdict(list)
    for request in requests:
        by_relation[relations.relation_of(request)].append(request)
    _check_size(n, len(by_relation), "relations among the requests")

    rng = random.Random(seed)
    chosen_relations = rng.sample(sorted(by_relation), n)
    chosen, used_subjects = [], {subject}
    for relation in chosen_relations:
        candidates = [r for r in by_relation[relation] if r.subject not in used_subjects]
        if not candidates:
            raise BatchError(
                f"Relation {relation!r} has no record whose subject is not already in the set."
            )
        pick = rng.choice(candidates)
        used_subjects.add(pick.subject)
        chosen.append(pick)
    return SubjectSetPair(
        same_subject=tuple(with_subject(request, subject) for request in chosen),
        distinct_subject=tuple(chosen),
        relations=tuple(chosen_relations),
    )


def with_subject(request: EditRequest, subject: str) -> EditRequest:
    """The request about another subject: its subject replaced in the prompt and rephrasings.

    Locality probes stay as they are (they ask about other entities); the original subject is
    kept in metadata as `original_subject`.
    """
    original = request.subject
    if original is None:
        raise BatchError("A request without a subject span cannot be given another subject.")
    return replace(
        request,
        prompt=request.prompt.replace(original, subject),
        subject=subject,
        rephrase_prompts=tuple(p.replace(original, subject) for p in request.rephrase_prompts),
        metadata={**request.metadata, "original_subject": original},
    )


def natural_same_subject_groups(
    requests: Sequence[EditRequest], min_size: int = 2
) -> dict[str, tuple[EditRequest, ...]]:
    """Subject -> its requests, for subjects with at least `min_size` facts (first-seen order)."""
    groups = defaultdict(list)
    for request in requests:
        if request.subject is not None:
            groups[request.subject].append(request)
    return {subject: tuple(group) for subject, group in groups.items() if len(group) >= min_size}


def natural_group_batch(
    requests: Sequence[EditRequest], n: int, seed: int, min_size: int = 2, max_size: int = 5
) -> list[EditRequest]:
    """n requests made of whole natural same-subject groups of min_size..max_size facts.

    Groups are taken in seeded random order and stay contiguous in the batch. A group is
    skipped when it would leave a remainder smaller than `min_size`, which no group could fill.
    """
    if not 1 <= min_size <= max_size:
        raise BatchError(
            f"Group sizes need 1 <= min_size <= max_size, got {min_size} and {max_size}."
        )
    groups = [
        group for group in natural_same_subject_groups(requests, min_size).values()
        if len(group) <= max_size
    ]
    _check_size(n, sum(len(group) for group in groups),
                f"requests in same-subject groups of {min_size} to {max_size}")
    random.Random(seed).shuffle(groups)
    batch: list[EditRequest] = []
    for group in groups:
        remainder = n - len(batch) - len(group)
        if remainder == 0 or remainder >= min_size:
            batch.extend(group)
        if len(batch) == n:
            return batch
    raise BatchError(
        f"Whole groups of {min_size} to {max_size} facts cannot add up to exactly {n} requests."
    )


def _check_size(n: int, available: int, what: str) -> None:
    if available == 0:
        raise BatchError(f"There are no {what} to draw a batch from.")
    if not 1 <= n <= available:
        raise BatchError(
            f"Cannot draw {n} from {available} {what}; ask for 1 to {available}."
        )
