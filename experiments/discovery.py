"""The editors the CLI can run, by name, and building one for a model.

Locate-then-edit editors come from `editors.registry`, retrieval editors from
`retrieval.registry`. An editor that cannot be built for this model (e.g. a retrieval editor
without a checkpoint trained for it) raises `EditorUnavailable` with the reason, so a
comparison of "all" editors can list it and run the others (`commands.sweep.line_up`).
"""

from __future__ import annotations

from typing import Any, Mapping

from editors import registry as weight_editors
from editors.hparams import EDITOR_HPARAMS, ValueOptimisationHparams
from editors.protocol import Editor
from experiments.identity import IdentityEditor
from lm.errors import UsageError

RETRIEVAL_EDITORS = ("recipe", "medrek", "medrek_copy", "ike")
EDITOR_NAMES = (*weight_editors.editor_names(), *RETRIEVAL_EDITORS)
# What a comparison can run: the unedited reference, then every editor.
LINEUP_NAMES = (IdentityEditor.name, *EDITOR_NAMES)


class EditorUnavailable(UsageError, LookupError):
    """A named editor cannot be built in this checkout (the message says why)."""


def build_editor(name: str, model: Any) -> Editor:
    """The named editor for this model; `EditorUnavailable` says why when it cannot be built."""
    if name not in EDITOR_NAMES:
        raise EditorUnavailable(f"Editor {name!r} is not available: no registry knows an editor called "
                                f"{name!r} (buildable: {', '.join(sorted(EDITOR_NAMES))}).")
    try:
        return make_named_editor(name, model)
    # The user's setting (no checkpoint for this model, an unsupported architecture) or a
    # missing optional library; anything else is a bug and keeps its traceback.
    except (UsageError, ImportError, OSError) as error:
        raise EditorUnavailable(f"Editor {name!r} cannot be built: {_reason(error)}") from error


def is_key_value_editor(name: str) -> bool:
    """MEMIT, PMET, MEMIT-Merge, AlphaEdit: the editors that read a key at a token position."""
    entry = EDITOR_HPARAMS.get(name)
    return entry is not None and issubclass(entry[1], ValueOptimisationHparams)


def build_lineup_editor(name: str, model: Any, key_value_overrides: Mapping[str, Any] | None = None) -> Editor:
    """A line-up member by name: "unedited" is the reference; `key_value_overrides` (e.g.
    key_token) go into the hyper-parameters of the key–value editors only. Raises
    `EditorUnavailable` when the editor cannot be built."""
    if name == IdentityEditor.name:
        return IdentityEditor()
    if not (key_value_overrides and is_key_value_editor(name)):
        return build_editor(name, model)
    try:
        return weight_editors.make_editor(name, model, key_value_overrides)
    except (UsageError, ImportError, OSError) as error:  # as build_editor
        raise EditorUnavailable(f"Editor {name!r} cannot be built: {error}") from error


def make_named_editor(name: str, model: Any) -> Editor:
    """The editor `name` with its default settings for `model`, from the registry that owns it."""
    if name in RETRIEVAL_EDITORS:
        # Imported on demand: it loads faiss and the knowledge encoder, which the weight
        # editors never need, and an import failure then only makes these unavailable.
        from retrieval import registry as retrieval_editors

        return retrieval_editors.make_editor(name, model)
    return weight_editors.make_editor(name, model)


def _reason(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__
