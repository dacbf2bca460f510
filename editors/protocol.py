"""The seam between editors and everything that scores them.

An editor turns `(model, tokenizer, requests)` into an `Applied` handle. Scoring code only ever
sees that handle's `scorer` (log-probabilities, argmax agreement, generation), so no metric
needs to know which family of editor produced the edit.
"""

from __future__ import annotations

from typing import Any, Protocol, Sequence, runtime_checkable

from data.requests import EditRequest
from lm.errors import UsageError


class EditError(UsageError):
    """An edit was refused before the model was touched (non-finite update, no covariance, …);
    the message names the request(s) or layer."""


@runtime_checkable
class Applied(Protocol):
    """A live edit. `undo()` returns the model to exactly its pre-edit state."""

    def undo(self) -> None: ...


@runtime_checkable
class Editor(Protocol):
    """Anything that can write a batch of facts into a model."""

    name: str

    def apply(self, model: Any, tok: Any, requests: Sequence[EditRequest]) -> Applied: ...
