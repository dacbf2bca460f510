"""The editors the CLI can run, by name, and building one for a model.

Locate-then-edit editors come from `editors.registry`, retrieval editors from
`retrieval.registry`. An editor that cannot be built for this model (e.g. a retrieval editor
without a checkpoint trained for it) raises `EditorUnavailable` with the reason, so a
comparison of "all" editors can list it and run the others (`commands.sweep.line_up`).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from editors import registry as weight_editors
from editors.hparams import EDITOR_HPARAMS, HparamsError, ValueOptimisationHparams
from editors.hparams_files import HparamsRequest, setting_path, split_setting
from editors.protocol import Editor
from experiments.identity import IdentityEditor
from lm.errors import UsageError
from lm.loading import model_fingerprint

RETRIEVAL_EDITORS = ("recipe", "medrek", "medrek_copy", "ike")
EDITOR_NAMES = (*weight_editors.editor_names(), *RETRIEVAL_EDITORS)
# What a comparison can run: the unedited reference, then every editor.
LINEUP_NAMES = (IdentityEditor.name, *EDITOR_NAMES)


class EditorUnavailable(UsageError, LookupError):
    """A named editor cannot be built in this checkout (the message says why)."""


def build_editor(name: str, model: Any) -> Editor:
    """The named editor for this model (a weight editor may carry a named setting,
    "memit_merge@memit_budget"); `EditorUnavailable` says why when it cannot be built."""
    if split_setting(name)[0] not in EDITOR_NAMES:
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


def build_lineup_editor(name: str, model: Any, key_value_overrides: Mapping[str, Any] | None = None,
                        hparams: HparamsRequest | None = None) -> Editor:
    """A line-up member by name: "unedited" is the reference; "editor@setting" a weight editor
    with a shipped named setting. `key_value_overrides` (e.g. key_token) go into the
    hyper-parameters of the key–value editors only; `hparams` chooses the weight editors'
    benchmark table and files. Raises `EditorUnavailable` when the editor cannot be built, and
    hyper-parameters that do not fit the model make it unavailable too."""
    if name == IdentityEditor.name:
        return IdentityEditor()
    if split_setting(name)[0] not in weight_editors.EDITORS:
        return build_editor(name, model)
    overrides, choice = _weight_editor_choice(name, key_value_overrides, hparams)
    try:
        return make_named_editor(name, model, overrides, **choice)
    except (UsageError, ImportError, OSError) as error:  # as build_editor
        raise EditorUnavailable(f"Editor {name!r} cannot be built: {_reason(error)}") from error


def check_lineup_name(name: str) -> None:
    """Refuse (a one-sentence UsageError) a name that is neither a line-up name nor a weight
    editor with a shipped setting ("memit_merge@memit_budget")."""
    editor, setting = split_setting(name)
    if editor not in LINEUP_NAMES:
        raise EditorUnavailable(f"Unknown editor {name}; choose from all, {', '.join(LINEUP_NAMES)}.")
    if setting is not None:
        if editor not in weight_editors.EDITORS:
            raise HparamsError(f"{editor} has no hyper-parameter settings, so {name} names nothing.")
        setting_path(editor, setting)


def defaults_note(names: Sequence[str], model: Any, key_value_overrides: Mapping[str, Any] | None = None,
                  hparams: HparamsRequest | None = None) -> str | None:
    """One line when the hyper-parameters of the weight editors among `names` were tuned on
    another model than `model` (None when they were tuned on it, or no weight editor runs)."""
    chosen = {}
    for name in names:
        if split_setting(name)[0] in weight_editors.EDITORS:
            overrides, choice = _weight_editor_choice(name, key_value_overrides, hparams)
            try:
                chosen[name] = weight_editors.choose_editor_hparams(name, model, overrides, **choice)
            except UsageError:
                continue  # not buildable for this model: its own refusal says so, not this note
    return weight_editors.tuned_elsewhere_note(chosen, model_fingerprint(model)) if chosen else None


def _weight_editor_choice(name: str, key_value_overrides: Mapping[str, Any] | None,
                          hparams: HparamsRequest | None) -> tuple[Mapping[str, Any] | None, dict[str, Any]]:
    """A weight editor's overrides and the `benchmark` / `hparams_file` arguments of
    `make_editor`: a named setting brings its own file, a plain name takes the run's file for it."""
    editor, setting = split_setting(name)
    hparams = hparams or HparamsRequest()
    overrides = key_value_overrides if is_key_value_editor(editor) else None
    return overrides, {"benchmark": hparams.benchmark, "hparams_file": None if setting else hparams.file_for(editor)}


def make_named_editor(name: str, model: Any, overrides: Mapping[str, Any] | None = None, **choice: Any) -> Editor:
    """The editor `name` for `model`, from the registry that owns it: its default settings, or
    for a weight editor `overrides` and `choice` (`benchmark`, `hparams_file`) on top."""
    if name in RETRIEVAL_EDITORS:
        # Imported on demand: it loads faiss and the knowledge encoder, which the weight
        # editors never need, and an import failure then only makes these unavailable.
        from retrieval import registry as retrieval_editors

        return retrieval_editors.make_editor(name, model)
    return weight_editors.make_editor(name, model, overrides, **choice)


def _reason(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__
