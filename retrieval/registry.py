"""The retrieval editors by the names the CLI and the comparison harness use.

`make_editor(name, model)` loads the shipped checkpoint for `name` (`ike` uses MedREK's retriever) and checks that it was
trained for `model` before any edit is attempted, so a mismatch is one sentence up front.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Callable, Mapping

from lm.errors import UsageError
from retrieval.editor import RetrievalEditor
from retrieval.incontext import ike_editor
from retrieval.medrek import medrek_copy_editor, medrek_editor
from retrieval.recipe import recipe_editor

EDITORS: Mapping[str, Callable[..., RetrievalEditor]] = MappingProxyType({
    "recipe": recipe_editor,
    "medrek": medrek_editor,
    "medrek_copy": medrek_copy_editor,
    "ike": ike_editor,
})


class UnknownRetrievalEditor(UsageError):
    """The name is not one of `EDITORS`."""


def make_editor(name: str, model=None) -> RetrievalEditor:
    """The shipped `name` editor; with `model`, refuse now if the checkpoint is for another LLM."""
    key = name.strip().lower()
    if key not in EDITORS:
        raise UnknownRetrievalEditor(f"Unknown retrieval editor {name!r}; choose one of {', '.join(EDITORS)}.")
    editor = EDITORS[key]()
    # Reports name the editor as asked for, not by the training run that made the checkpoint
    # (the shipped RECIPE network was exported from a run called "recipe-joint-plr").
    editor.name = key
    if model is not None:
        editor.check_model(model)
    return editor
