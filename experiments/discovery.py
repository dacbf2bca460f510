"""Find the editors this checkout can build, so comparison scripts run whatever exists.

Editors register themselves in `editors.registry` (locate-then-edit) and `retrieval.registry`
or the `retrieval` package (retrieval editors). A registry exposes `make_editor(name, ...)`
(for the names of its `EDITORS` mapping, else of `EDITOR_NAMES`, else those expected here),
or only `EDITORS`, a mapping from name to factory. A factory is called with whichever of
`model`, `tok`, `tokenizer` and `model_type` it declares. Nothing here imports an editor by name, so the
harness works before, while and after the editors are written; what cannot be built is
listed with the reason.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import inspect
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Callable, Mapping

from editors.hparams import EDITOR_HPARAMS
from editors.protocol import Editor
from experiments.identity import IdentityEditor

RETRIEVAL_EDITORS = ("recipe", "medrek")
# Registry module -> the editor names it is expected to provide eventually.
REGISTRIES: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "editors.registry": tuple(EDITOR_HPARAMS),
    "retrieval.registry": RETRIEVAL_EDITORS,
    "retrieval": RETRIEVAL_EDITORS,
})

Factory = Callable[..., Editor]


class EditorUnavailable(LookupError):
    """A named editor cannot be built in this checkout (the message says why)."""


@dataclass(frozen=True)
class Lineup:
    """The editors a comparison will run (unedited baseline first) and those it cannot."""

    editors: tuple[Editor, ...]
    unavailable: Mapping[str, str]  # editor name -> one sentence on why


def discover_editors(model: Any, tok: Any) -> Lineup:
    """Every editor any registry can build for this model, after the unedited baseline."""
    factories, unavailable = _factories()
    editors: list[Editor] = [IdentityEditor()]
    for name, factory in factories.items():
        try:
            editors.append(_call(factory, model, tok))
        # A comparison must not die because one editor cannot be built; the reason is shown.
        except Exception as error:  # noqa: BLE001
            unavailable[name] = _reason(error)
    return Lineup(tuple(editors), unavailable)


def build_editor(name: str, model: Any, tok: Any) -> Editor:
    """The named editor for this model; `EditorUnavailable` says why when it cannot be built."""
    factories, unavailable = _factories()
    if name not in factories:
        known = ", ".join(sorted(factories)) or "none"
        why = unavailable.get(name, f"no registry knows an editor called {name!r}")
        raise EditorUnavailable(f"Editor {name!r} is not available: {why} (buildable: {known}).")
    try:
        return _call(factories[name], model, tok)
    except Exception as error:  # noqa: BLE001 - any failure means "cannot be built", said once
        raise EditorUnavailable(f"Editor {name!r} cannot be built: {_reason(error)}") from error


def _factories() -> tuple[dict[str, Factory], dict[str, str]]:
    """Factories by editor name, and expected names no registry provides (with why)."""
    factories: dict[str, Factory] = {}
    problems: dict[str, str] = {}
    for module_name, expected in REGISTRIES.items():
        try:
            entries = _registry_entries(module_name, expected)
        except Exception as error:  # noqa: BLE001 - a half-written registry must not stop a run
            problems.update({name: f"{module_name} fails to load ({_reason(error)})" for name in expected})
            continue
        for name, factory in entries.items():
            factories.setdefault(name, factory)
    expected_names = dict.fromkeys(name for names in REGISTRIES.values() for name in names)
    unavailable = {
        name: problems.get(name, "no registry provides it yet")
        for name in expected_names if name not in factories
    }
    return factories, unavailable


def _registry_entries(module_name: str, expected: tuple[str, ...]) -> dict[str, Factory]:
    """Factories of one registry module; `make_editor` wins over `EDITORS`, whose values may
    be classes that need hyper-parameters rather than a model."""
    if importlib.util.find_spec(module_name) is None:
        return {}
    module = importlib.import_module(module_name)
    editors = getattr(module, "EDITORS", None)
    make_editor = getattr(module, "make_editor", None)
    if make_editor is not None:
        names = tuple(editors) if isinstance(editors, Mapping) else tuple(
            getattr(module, "EDITOR_NAMES", expected))
        # inspect.signature of a partial drops the bound name, so _call sees what else it declares.
        return {name: functools.partial(make_editor, name) for name in names}
    return dict(editors) if isinstance(editors, Mapping) else {}


def _call(factory: Factory, model: Any, tok: Any) -> Editor:
    offered = {"model": model, "tok": tok, "tokenizer": tok,
               "model_type": str(getattr(model.config, "model_type", ""))}
    declared = inspect.signature(factory).parameters
    editor = factory(**{key: value for key, value in offered.items() if key in declared})
    if not isinstance(editor, Editor):
        raise TypeError(f"the factory returned {type(editor).__name__}, not an editor")
    return editor


def _reason(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__
