"""The unedited baseline as an editor: `apply` changes nothing, `undo` has nothing to restore.

Scored like any editor, it gives the base rates every real editor should be read against
(efficacy of the unedited model on the new targets, fluency and perplexity of the untouched
model) and, by construction, locality 1.0. Reports list it as "unedited".
"""

from __future__ import annotations

from typing import Any, Sequence

from data.requests import EditRequest, validate_requests


class IdentityEditor:
    """An `Editor` that writes no fact (it still refuses requests no editor could apply)."""

    name = "unedited"

    def apply(self, model: Any, tok: Any, requests: Sequence[EditRequest]) -> "NoEdit":
        validate_requests(requests)
        return NoEdit()


class NoEdit:
    """The `Applied` handle of `IdentityEditor`; it exposes no scorer, so the plain model is scored."""

    def undo(self) -> None:
        """Nothing was changed, so nothing is restored."""
