"""Editor names as typed on the CLI, and the one function that builds an editor for a model."""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable, Mapping

from editors.alphaedit import AlphaEditEditor
from editors.covariances import CovarianceSource
from editors.ft import FtEditor
from editors.hparams import load_hparams
from editors.memit import MemitEditor
from editors.merge import MergeEditor
from editors.pmet import PmetEditor
from lm.adapters import adapter_for
from lm.errors import UsageError

Progress = Callable[[str, int, int], None]

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
    covariance: CovarianceSource | None = None,
    progress: Progress | None = None,
    cache_root: Path | None = None,
    reuse_values: bool = True,
):
    """The editor `name` with its defaults for `model`'s family and `overrides` on top.

    `covariance` replaces the default corpus statistics (key–value editors only); `cache_root`
    redirects the editor's own caches (context prefixes, default covariance, optimised values);
    `reuse_values=False` makes a key–value editor optimise every value itself (for timing).
    """
    key = name.strip().lower().replace("-", "_")
    if key not in EDITORS:
        raise UnknownEditor(f"Unknown editor {name!r}; choose one of {', '.join(EDITORS)}.")
    hparams = load_hparams(key, model.config.model_type, overrides)
    hparams.check_fits(adapter_for(model).num_layers(model))
    if key == "ft_l":
        return FtEditor(hparams, progress=progress)
    return EDITORS[key](hparams, covariance=covariance, progress=progress, cache_root=cache_root,
                        reuse_values=reuse_values)
