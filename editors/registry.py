"""Editor names as typed on the CLI, and the one function that builds an editor for a model."""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

from editors.alphaedit import AlphaEditEditor
from editors.covariances import CovarianceSource
from editors.ft import FtEditor
from editors.hparams import HparamsError
from editors.hparams_files import (
    ChosenHparams, HparamsFile, choose_hparams, read_hparams_file, setting_path, split_setting,
)
from editors.memit import MemitEditor
from editors.merge import MergeEditor
from editors.pmet import PmetEditor
from lm.adapters import adapter_for
from lm.errors import UsageError
from lm.progress import StageProgress


EDITORS: Mapping[str, type] = MappingProxyType(
    {
        "memit": MemitEditor,
        "pmet": PmetEditor,
        "memit_merge": MergeEditor,
        "alphaedit": AlphaEditEditor,
        "ft_l": FtEditor,
    }
)


class UnknownEditor(UsageError):
    """The editor name is not one of `EDITORS`."""


def editor_names() -> tuple[str, ...]:
    return tuple(EDITORS)


def make_editor(
    name: str,
    model,
    overrides: Mapping[str, Any] | None = None,
    *,
    benchmark: str | None = None,
    hparams_file: HparamsFile | None = None,
    covariance: CovarianceSource | None = None,
    progress: StageProgress | None = None,
    cache_root: Path | None = None,
    reuse_values: bool = True,
):
    """The editor `name` with its defaults for `model`'s family (and `benchmark`'s table, when
    its file has one), a hyper-parameter file's values and `overrides` on top.

    `name` may carry a shipped setting, "memit_merge@memit_budget": that setting's file is then
    the hyper-parameter file, and the editor reports itself under the full name (its rows stay
    apart from the plain editor's). `covariance` replaces the default corpus statistics
    (key–value editors only); `cache_root` redirects the editor's own caches (context prefixes,
    default covariance, optimised values); `reuse_values=False` makes a key–value editor
    optimise every value itself (for timing).
    """
    chosen = choose_editor_hparams(name, model, overrides, benchmark=benchmark, hparams_file=hparams_file)
    key, _ = split_setting(normalise(name))
    if key == "ft_l":
        editor = FtEditor(chosen.hparams, progress=progress)
    else:
        editor = EDITORS[key](chosen.hparams, covariance=covariance, progress=progress, cache_root=cache_root,
                              reuse_values=reuse_values)
    editor.name = normalise(name)  # the instance's name: with its setting, if any
    return editor


def choose_editor_hparams(name: str, model, overrides: Mapping[str, Any] | None = None, *,
                          benchmark: str | None = None, hparams_file: HparamsFile | None = None) -> ChosenHparams:
    """What `make_editor` would configure, without building the editor (raises the same errors)."""
    key, setting = split_setting(normalise(name))
    if key not in EDITORS:
        raise UnknownEditor(f"Unknown editor {name!r}; choose one of {', '.join(EDITORS)}.")
    if setting is not None:
        if hparams_file is not None:
            raise HparamsError(f"{name} is a named setting; it takes no other hyper-parameter file.")
        hparams_file = read_hparams_file(setting_path(key, setting))
    chosen = choose_hparams(key, model.config.model_type, overrides, benchmark=benchmark, file=hparams_file)
    chosen.hparams.check_fits(adapter_for(model).num_layers(model))
    return chosen


def tuned_elsewhere_note(chosen: Mapping[str, ChosenHparams], fingerprint: str) -> str | None:
    """One line when some editors' hyper-parameters were tuned on another model than the one
    whose weights hash to `fingerprint` (None when all were tuned on it)."""
    elsewhere = {name: c.tuned_on for name, c in chosen.items() if c.tuned_on.fingerprint != fingerprint}
    if not elsewhere:
        return None
    where = "; ".join(sorted({tuned_on.describe() for tuned_on in elsewhere.values()}))
    return (f"The hyper-parameters of {', '.join(elsewhere)} were tuned on {where}, not on this model; "
            "`editscope tune EDITOR --benchmark B --model M` tunes them for it.")


def normalise(name: str) -> str:
    return name.strip().lower().replace("-", "_")
