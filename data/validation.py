"""Find edits in a batch that spoil each other's scores, and say what score remains reachable.

Two confounds occur in the published data (BENCHMARKS.md counts them on MedCF++ test):

- locality overlap: a record's edit or rephrase prompt is a locality prompt of another
  record, so a successful edit necessarily changes that record's locality answer;
- contradiction: records share an edit prompt but want different new targets, so at most
  the records agreeing on one target can succeed.

A record whose edit or rephrase prompt is one of its *own* locality prompts (what MedCF++
removed from MedCF) is reported separately as a self overlap.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Mapping, Sequence

from data.requests import EditRequest

POLICIES = ("flag", "exclude")


@dataclass(frozen=True)
class Ceiling:
    """Best achievable scores on a batch given its confounds (1.0 means no limit)."""

    efficacy: float
    locality: Mapping[str, float]  # per locality group, e.g. {"td": 0.9, ...} or {"default": 1.0}
    sentence: str


@dataclass(frozen=True)
class ValidationResult:
    """A checked batch: what to run, what was found (indices into the input), what it costs."""

    requests: tuple[EditRequest, ...]  # the whole batch ("flag") or the kept records ("exclude")
    policy: str
    kept_indices: tuple[int, ...]
    locality_overlap_indices: tuple[int, ...]
    self_overlap_indices: tuple[int, ...]
    contradictory_groups: tuple[tuple[int, ...], ...]
    ceiling: Ceiling  # for `requests`, i.e. after any exclusion

    @property
    def locality_overlaps(self) -> int:
        return len(self.locality_overlap_indices)

    @property
    def self_overlaps(self) -> int:
        return len(self.self_overlap_indices)

    @property
    def contradictory_records(self) -> int:
        return sum(len(group) for group in self.contradictory_groups)


def validate_batch(requests: Sequence[EditRequest], policy: str = "flag") -> ValidationResult:
    """Find locality overlaps and contradictory edits; with "exclude", drop what causes them.

    "exclude" drops every overlapping record, and from each contradictory group keeps only its
    first remaining record: the prompt is still a fair edit once it has a single target, and
    dropping whole groups would bias the batch against subjects with several facts.
    """
    if policy not in POLICIES:
        raise ValueError(f"Unknown validation policy {policy!r}; choose {' or '.join(POLICIES)}.")
    overlaps, self_overlaps = _locality_overlaps(requests)
    contradictions = _contradictory_groups(requests)
    if policy == "flag":
        kept = tuple(range(len(requests)))
    else:
        excluded = set(overlaps) | set(self_overlaps)
        for group in contradictions:
            excluded.update([index for index in group if index not in excluded][1:])
        kept = tuple(index for index in range(len(requests)) if index not in excluded)
    batch = tuple(requests[index] for index in kept)
    return ValidationResult(batch, policy, kept, overlaps, self_overlaps, contradictions,
                            batch_ceiling(batch))


def batch_ceiling(requests: Sequence[EditRequest]) -> Ceiling:
    """Best achievable efficacy and per-group locality of a batch applied as it is."""
    unreachable_edits = sum(
        len(group) - max(Counter(requests[index].target_new for index in group).values())
        for group in _contradictory_groups(requests)
    )
    efficacy = 1 - unreachable_edits / len(requests) if requests else 1.0

    edited_prompts = {prompt for request in requests for prompt in _edited_prompts(request)}
    probes, confounded = Counter(), Counter()
    for request in requests:
        for group, group_probes in request.locality.items():
            probes[group] += len(group_probes)
            confounded[group] += sum(probe.prompt in edited_prompts for probe in group_probes)
    locality = {group: 1 - confounded[group] / probes[group] for group in probes if probes[group]}

    parts = [f"Best achievable on this batch of {len(requests)}: efficacy {efficacy:.1%}"]
    if unreachable_edits:
        parts.append(f" ({unreachable_edits} edits are unreachable: another edit gives their"
                     " prompt a different target)")
    if locality:
        per_group = (f"{group} {value:.1%}" for group, value in locality.items())
        parts.append(", locality " + ", ".join(per_group))
    if sum(confounded.values()):
        parts.append(f" ({sum(confounded.values())} of {sum(probes.values())} locality probes"
                     " ask a prompt that the batch edits)")
    return Ceiling(efficacy, locality, "".join(parts) + ".")


def _edited_prompts(request: EditRequest) -> tuple[str, ...]:
    """Prompts whose answer a successful edit changes: the edit prompt and its rephrasings."""
    return (request.prompt, *request.rephrase_prompts)


def _locality_overlaps(requests: Sequence[EditRequest]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Indices whose edited prompts are another record's / their own locality prompts."""
    owners = defaultdict(set)
    for index, request in enumerate(requests):
        for group_probes in request.locality.values():
            for probe in group_probes:
                owners[probe.prompt].add(index)
    overlaps, self_overlaps = [], []
    for index, request in enumerate(requests):
        owner_sets = [owners.get(prompt, set()) for prompt in _edited_prompts(request)]
        if any(owner_set - {index} for owner_set in owner_sets):
            overlaps.append(index)
        if any(index in owner_set for owner_set in owner_sets):
            self_overlaps.append(index)
    return tuple(overlaps), tuple(self_overlaps)


def _contradictory_groups(requests: Sequence[EditRequest]) -> tuple[tuple[int, ...], ...]:
    """Groups of indices sharing an edit prompt with more than one distinct target_new."""
    by_prompt = defaultdict(list)
    for index, request in enumerate(requests):
        by_prompt[request.prompt].append(index)
    return tuple(
        tuple(group) for group in by_prompt.values()
        if len({requests[index].target_new for index in group}) > 1
    )
