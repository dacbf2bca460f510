"""Reading back an edit that `editscope edit --save` wrote (through `Applied.save`).

The one place that knows the two saved forms (`editors.protocol.SAVED_KINDS`): an edited model
folder (weight editors), loaded as a model; or an edit memory (retrieval editors), loaded into
the editor named in the folder's manifest on top of the unedited base model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from editors.protocol import SAVED_EDIT_MANIFEST, RestoresSaved
from experiments.discovery import build_editor
from lm.loading import load
from lm.scoring import LMScorer, Scorer


class SavedEditError(ValueError):
    """The folder is not an edit saved by `editscope edit` (one sentence says why)."""


@dataclass(frozen=True)
class SavedEdit:
    """A saved edit, live: `scorer` answers through it (retrieval memories included)."""

    editor: str
    model: Any
    tok: Any
    scorer: Scorer


def load_saved_edit(folder: str | Path, base_model: str = "default") -> SavedEdit:
    """The edit saved in `folder`. `base_model` is the unedited model a retrieval edit memory
    was made for (a weight edit's folder is itself the edited model and ignores it)."""
    folder = Path(folder)
    manifest_path = folder / SAVED_EDIT_MANIFEST
    try:
        manifest = json.loads(manifest_path.read_text())
        editor_name, kind = manifest["editor"], manifest["kind"]
    except (OSError, ValueError, KeyError, TypeError):
        raise SavedEditError(f"{folder} holds no readable {SAVED_EDIT_MANIFEST}, so it is not a folder "
                             "written by `editscope edit --save`.") from None
    if kind == "weights":
        model, tok = load(str(folder))
        return SavedEdit(editor_name, model, tok, LMScorer(model, tok))
    if kind != "memory":
        raise SavedEditError(f"{manifest_path} names an unknown kind of saved edit {kind!r}.")
    model, tok = load(base_model)
    editor = build_editor(editor_name, model)
    if not isinstance(editor, RestoresSaved):
        raise SavedEditError(f"{manifest_path} says {editor_name!r} saved an edit memory, but that editor "
                             "cannot load one.")
    return SavedEdit(editor_name, model, tok, editor.load_saved(folder, model, tok).scorer)
