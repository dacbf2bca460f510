"""Locality: do unrelated prompts keep the unedited model's predictions?

Both models are teacher forced on each probe's ground-truth answer; the metric compares their
argmax tokens position by position, so it measures change, not correctness.
"""

from __future__ import annotations

from typing import Mapping, Sequence


def locality_agreement(
    edited_argmax: Sequence[Sequence[int]], unedited_argmax: Sequence[Sequence[int]]
) -> float:
    """Per probe the fraction of ground-truth positions whose argmax the edit left unchanged,
    averaged over probes (each probe weighs the same, whatever its length)."""
    if len(edited_argmax) != len(unedited_argmax):
        raise ValueError(f"Got {len(edited_argmax)} edited probes but {len(unedited_argmax)} unedited probes.")
    if not edited_argmax:
        raise ValueError("locality_agreement needs at least one probe.")
    total = 0.0
    for index, (edited, unedited) in enumerate(zip(edited_argmax, unedited_argmax)):
        if len(edited) != len(unedited) or not edited:
            raise ValueError(
                f"Probe {index}: edited and unedited predictions must cover the same non-empty "
                f"positions, got {len(edited)} and {len(unedited)}."
            )
        total += sum(int(e == u) for e, u in zip(edited, unedited)) / len(edited)
    return total / len(edited_argmax)


def locality_by_group(
    edited_argmax: Mapping[str, Sequence[Sequence[int]]],
    unedited_argmax: Mapping[str, Sequence[Sequence[int]]],
) -> dict[str, float]:
    """`locality_agreement` per named probe group (`td`, `em`, `ss`, `ts`, or `default`)."""
    if set(edited_argmax) != set(unedited_argmax):
        raise ValueError(
            f"Edited groups {sorted(edited_argmax)} differ from unedited groups {sorted(unedited_argmax)}."
        )
    return {group: locality_agreement(edited_argmax[group], unedited_argmax[group]) for group in edited_argmax}


def mean_locality(by_group: Mapping[str, float]) -> float:
    """Unweighted mean over groups: MedREK's overall locality over TD, EM, SS and TS."""
    if not by_group:
        raise ValueError("mean_locality needs at least one group.")
    return sum(by_group.values()) / len(by_group)
