"""Key collisions inside a set of edit requests, found before anything is applied.

Two requests collide when they share a subject (so MEMIT reads the same key for both and must
map one key to two values) or when their keys at the edit layers lie closer than a threshold
relative to the mean key norm (different text, near-identical key). Only editors that write one
value per key and do not merge shared keys (`KeyValueWriter` with `merges_shared_keys` false)
are hurt by them. Used by `editscope edit`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from data.requests import EditRequest
from editors.akd import batch_keys
from editors.protocol import Editor, KeyValueWriter


@dataclass(frozen=True)
class Collision:
    first: int
    second: int
    reason: str

    def sentence(self) -> str:
        return f"requests {self.first} and {self.second} ({self.reason})"


def key_collisions(editor: Editor, model, tok, requests: Sequence[EditRequest],
                   relative_threshold: float) -> list[Collision]:
    """The pairs `editor` would write under one key, overwriting one value with the other
    (none for editors that write no keys or merge requests sharing one)."""
    if not isinstance(editor, KeyValueWriter) or editor.merges_shared_keys:
        return []
    return same_subject_pairs(requests) + close_key_pairs(
        model, tok, requests, editor.key_layer, relative_threshold, editor.key_token)


def same_subject_pairs(requests: Sequence[EditRequest]) -> list[Collision]:
    by_subject: dict[str, list[int]] = {}
    for index, request in enumerate(requests):
        if request.subject is not None:
            by_subject.setdefault(request.subject, []).append(index)
    return [
        Collision(a, b, f"same subject {subject!r}")
        for subject, indices in by_subject.items()
        for position, a in enumerate(indices)
        for b in indices[position + 1:]
    ]


def close_key_pairs(model, tok, requests: Sequence[EditRequest], layer: int, relative_threshold: float,
                    key_token: str = "subject_last") -> list[Collision]:
    """Pairs whose keys at `layer` are closer than `relative_threshold` × the mean key norm
    (and that do not already share a subject, which `same_subject_pairs` reports)."""
    if len(requests) < 2:
        return []
    keys = batch_keys(model, tok, requests, [layer], key_token)[layer].double()
    scale = keys.norm(dim=1).mean()
    distances = torch.cdist(keys, keys) / scale
    found = []
    for a in range(len(requests)):
        for b in range(a + 1, len(requests)):
            shared = requests[a].subject is not None and requests[a].subject == requests[b].subject
            if not shared and float(distances[a, b]) < relative_threshold:
                found.append(Collision(a, b, f"keys at layer {layer} {float(distances[a, b]):.3f}× the mean key norm apart"))
    return found
