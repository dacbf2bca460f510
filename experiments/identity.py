"""The unedited baseline as an editor: `apply` changes nothing, `undo` has nothing to restore.

Scored like any editor, it gives the base rates every real editor should be read against
(efficacy of the unedited model on the new targets, fluency and perplexity of the untouched
model) and, by construction, locality 1.0. Reports list it as "unedited".
"""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping, Sequence

from data.requests import EditRequest, validate_requests
from editors.applied import save_model_folder
from lm.scoring import LMScorer


class IdentityEditor:
    """An `Editor` that writes no fact (it still refuses requests no editor could apply)."""

    name = "unedited"
    hparams = None

    def prepare(self, model: Any, tok: Any) -> None:
        """Nothing to prepare."""

    def apply(self, model: Any, tok: Any, requests: Sequence[EditRequest]) -> "NoEdit":
        validate_requests(requests)
        return NoEdit(model, tok)


class NoEdit:
    """The `Applied` handle of `IdentityEditor`: scores, and saves, the untouched model."""

    info: Mapping[str, Any] = MappingProxyType({})

    def __init__(self, model: Any, tok: Any):
        self.model, self.tok = model, tok

    @property
    def scorer(self) -> LMScorer:
        return LMScorer.within_budget(self.model, self.tok)

    def save(self, folder: Path) -> None:
        save_model_folder(folder, self.model, self.tok)

    def undo(self) -> None:
        """Nothing was changed, so nothing is restored."""
