"""Edits a user can look at: what `edit --save` leaves in its folder, and how `ask` (and the
Python API) open it again, or apply edits in memory instead. One place for both directions.

`edit --save DIR` writes what the edit handle's `Applied.save` writes, either an edited model
folder (weight editors: `config.json` and the weights) or an edit memory (retrieval editors:
`memory.safetensors`, read back through the editor's `RestoresSaved`), and beside it a small
manifest (`editscope-edits.json`: editor, base model, the edits in the canonical format) so
that the folder can be opened without repeating how it was made.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from data.canonical import canonical_record, canonical_request
from data.requests import EditRequest
from editors.protocol import ReportsRetrieval, RestoresSaved
from experiments.discovery import build_editor
from lm.errors import UsageError
from lm.loading import load
from lm.scoring import LMScorer, Scorer

MANIFEST_FILE = "editscope-edits.json"
MEMORY_FILE = "memory.safetensors"  # what a retrieval edit's `save` writes (retrieval.editor)

# Per prompt: the stored edit it retrieved ({"prompt", "target_new", "subject"}), or None.
Retrieve = Callable[[Sequence[str]], list[Mapping[str, Any] | None]]


class SavedEditsError(UsageError):
    """A folder cannot be opened as saved edits (one sentence says why)."""


@dataclass(frozen=True)
class EditedModel:
    """The unedited and the edited model side by side, as scorers (generation and target
    scores), with the edits when they are known and, for retrieval editors, what each prompt
    retrieves."""

    editor: str
    unedited: Scorer
    edited: Scorer
    requests: tuple[EditRequest, ...]
    retrieve: Retrieve | None = None

    def edit_for(self, prompt: str) -> Mapping[str, Any] | None:
        """The edit this prompt reaches: for a retrieval editor the entry it retrieves, else the
        request whose edit prompt or rephrasing it is (None: no edit is about this prompt)."""
        if self.retrieve is not None:
            return self.retrieve([prompt])[0]
        for request in self.requests:
            if prompt.strip() in (request.prompt.strip(), *(p.strip() for p in request.rephrase_prompts)):
                return {"prompt": request.prompt, "target_new": request.target_new, "subject": request.subject}
        return None


def write_manifest(folder: Path, editor: str, model_name: str, requests: Sequence[EditRequest]) -> None:
    """The manifest `open_saved_edits` reads (written into the folder `edit --save` fills)."""
    manifest = {"editor": editor, "model": model_name,
                "requests": [canonical_record(request) for request in requests]}
    (Path(folder) / MANIFEST_FILE).write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n")


def open_saved_edits(folder: str | Path, model_name: str | None = None,
                     editor_name: str | None = None) -> EditedModel:
    """Open what `edit --save` wrote. The base (unedited) model and, for a memory, the editor
    come from the manifest unless given; a folder without a manifest needs them given."""
    folder = Path(folder)
    if not folder.is_dir():
        raise SavedEditsError(f"--edits {folder} is not a folder written by `edit --save`.")
    manifest = _manifest(folder)
    model_name = model_name or manifest.get("model") or "default"
    requests = tuple(canonical_request(record, {"index": index})
                     for index, record in enumerate(manifest.get("requests", [])))
    if (folder / "config.json").is_file():
        base_model, base_tok = load(model_name)
        edited_model, edited_tok = load(str(folder))
        return EditedModel(manifest.get("editor", "edited weights"),
                           LMScorer.within_budget(base_model, base_tok),
                           LMScorer.within_budget(edited_model, edited_tok), requests)
    if (folder / MEMORY_FILE).is_file():
        editor_name = editor_name or manifest.get("editor")
        if editor_name is None:
            raise SavedEditsError(f"{folder} holds an edit memory but no manifest; name its editor with --editor.")
        model, tok = load(model_name)
        return _with_memory(editor_name, model, tok, folder, requests)
    raise SavedEditsError(f"{folder} holds neither an edited model (config.json) nor an edit memory ({MEMORY_FILE}).")


def edit_in_memory(model: Any, tok: Any, editor_name: str, requests: Sequence[EditRequest]) -> EditedModel:
    """Apply `requests` with the named editor now. A retrieval editor leaves the weights alone
    and edits through its memory; after a weight editor the edited model is copied and the edit
    undone, so the unedited model stays beside the edited one (twice the model's memory)."""
    editor = build_editor(editor_name, model)
    applied = editor.apply(model, tok, list(requests))
    if isinstance(applied, ReportsRetrieval):  # a retrieval handle: the weights are unchanged
        return EditedModel(editor.name, LMScorer.within_budget(model, tok), applied.scorer, tuple(requests),
                           applied.retrieved_entries)
    edited_model = copy.deepcopy(model)
    applied.undo()
    return EditedModel(editor.name, LMScorer.within_budget(model, tok),
                       LMScorer.within_budget(edited_model, tok), tuple(requests))


def _with_memory(editor_name: str, model: Any, tok: Any, folder: Path,
                 requests: tuple[EditRequest, ...]) -> EditedModel:
    editor = build_editor(editor_name, model)
    if not isinstance(editor, RestoresSaved):
        raise SavedEditsError(f"{folder} holds an edit memory, but editor {editor_name!r} cannot load one.")
    applied = editor.load_saved(folder, model, tok)
    retrieve = applied.retrieved_entries if isinstance(applied, ReportsRetrieval) else None
    return EditedModel(editor.name, LMScorer.within_budget(model, tok), applied.scorer, requests, retrieve)


def _manifest(folder: Path) -> dict[str, Any]:
    path = folder / MANIFEST_FILE
    if not path.is_file():
        return {}
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise SavedEditsError(f"{path} cannot be read as JSON ({error}).") from None
    if not isinstance(manifest, dict):
        raise SavedEditsError(f"{path} is not a JSON object.")
    return manifest
