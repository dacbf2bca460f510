"""Hyper-parameter files given by name or path (`--hparams FILE`, `editor@setting`), and the
choice of an editor's hyper-parameters from everything that can set them.

A file names its editor, says where its values were chosen, and holds the values:

    editor = "memit"
    tuned_on = { model = "default", fingerprint = "…", benchmark = "medcfpp", split = "train" }

    [hparams]
    mom2_update_weight = 1000.0
    layers = [2, 3, 4, 5, 6]

`editscope tune` writes such files; named settings ship in `editors/hparams/settings/` as
`<editor>@<name>.toml` (e.g. `memit_merge@memit_budget`) and are picked by that name in
`--editors` or `--hparams`. The values of a file go on top of the shipped defaults of the
model's family (and benchmark), so a file may set only some keys; `tuned_on` may be left out
when the file only changes a setting (the defaults' provenance then stands).

Precedence, later wins: family table < benchmark table < file < command-line overrides.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from editors.hparams import (
    DEFAULT_HPARAMS_DIR, EDITOR_HPARAMS, TUNED_ON, Hparams, HparamsError, TunedOn, ValueLayer, build_hparams,
    check_value, hparams_class_of, override_layer, shipped_defaults,
)

SETTINGS_DIR = DEFAULT_HPARAMS_DIR / "settings"
SETTING_SEPARATOR = "@"
EDITOR_KEY, VALUES_TABLE = "editor", "hparams"


@dataclass(frozen=True)
class HparamsFile:
    """A checked hyper-parameter file: its editor, values (typed) and provenance."""

    path: Path
    editor: str
    values: Mapping[str, Any]
    tuned_on: TunedOn | None

    @property
    def layer(self) -> ValueLayer:
        return ValueLayer(str(self.path), self.values)


@dataclass(frozen=True)
class ChosenHparams:
    """An editor's hyper-parameters, where they were tuned, and every source that set them."""

    hparams: Hparams
    tuned_on: TunedOn
    sources: tuple[str, ...]


@dataclass(frozen=True)
class HparamsRequest:
    """What a run asks of the weight editors' hyper-parameters beyond their names: the benchmark
    whose table applies (None: the family defaults), and hyper-parameter files, each applying
    to the editor it names (at most one per editor)."""

    benchmark: str | None = None
    files: tuple[HparamsFile, ...] = ()

    def __post_init__(self) -> None:
        editors = [file.editor for file in self.files]
        twice = sorted({editor for editor in editors if editors.count(editor) > 1})
        if twice:
            raise HparamsError(f"Two hyper-parameter files for {twice[0]}; give one per editor.")

    def file_for(self, editor_name: str) -> HparamsFile | None:
        """The file for a plain editor name ("memit"); a named setting brings its own file."""
        return next((file for file in self.files if file.editor == editor_name), None)

    def check_editors(self, names: Sequence[str]) -> None:
        """Refuse a file for an editor the run does not include."""
        for file in self.files:
            if file.editor not in names:
                raise HparamsError(f"{file.path} holds hyper-parameters for {file.editor}, which this run "
                                   f"does not include (editors: {', '.join(names)}).")


def split_setting(name: str) -> tuple[str, str | None]:
    """"memit_merge@memit_budget" -> ("memit_merge", "memit_budget"); "memit" -> ("memit", None)."""
    editor, separator, setting = name.partition(SETTING_SEPARATOR)
    return editor, (setting if separator else None)


def setting_path(editor: str, setting: str, settings_dir: Path = SETTINGS_DIR) -> Path:
    """The shipped file of a named setting; HparamsError listing the settings there are."""
    path = settings_dir / f"{editor}{SETTING_SEPARATOR}{setting}.toml"
    if not path.is_file():
        known = sorted(p.stem for p in settings_dir.glob("*.toml"))
        raise HparamsError(f"No setting '{editor}{SETTING_SEPARATOR}{setting}' (shipped settings: "
                           f"{', '.join(known) or 'none'}).")
    return path


def locate_hparams_file(text: str, settings_dir: Path = SETTINGS_DIR) -> Path:
    """--hparams: a file path, or the name of a shipped setting ("memit_merge@memit_budget")."""
    path = Path(text).expanduser()
    if path.is_file():
        return path
    editor, setting = split_setting(text)
    if setting and not path.suffix:
        return setting_path(editor, setting, settings_dir)
    raise HparamsError(f"Hyper-parameter file '{text}' does not exist.")


def read_hparams_file(path: Path) -> HparamsFile:
    """Read and check a hyper-parameter file: known editor, known keys, right types (ranges are
    checked when the values meet the model's defaults). HparamsError says what is wrong."""
    try:
        with Path(path).open("rb") as handle:
            document = tomllib.load(handle)
    except FileNotFoundError:
        raise HparamsError(f"Hyper-parameter file '{path}' does not exist.") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise HparamsError(f"{path}: not valid TOML ({error}).") from None
    unknown = sorted(set(document) - {EDITOR_KEY, TUNED_ON, VALUES_TABLE})
    if unknown:
        raise HparamsError(f"{path}: unknown top-level key '{unknown[0]}' (expected {EDITOR_KEY}, "
                           f"{TUNED_ON} and an [{VALUES_TABLE}] table).")
    editor = document.get(EDITOR_KEY)
    if not isinstance(editor, str) or editor not in EDITOR_HPARAMS:
        raise HparamsError(f"{path}: '{EDITOR_KEY}' must name one of {', '.join(EDITOR_HPARAMS)}, "
                           f"got {editor!r}.")
    table = document.get(VALUES_TABLE, {})
    if not isinstance(table, dict):
        raise HparamsError(f"{path}: [{VALUES_TABLE}] must be a table of hyper-parameters.")
    source = f"{path} [{VALUES_TABLE}]"
    hparams_class = hparams_class_of(editor)
    values = {key: check_value(hparams_class, key, raw, source) for key, raw in table.items()}
    tuned_on = TunedOn.parse(document[TUNED_ON], str(path)) if TUNED_ON in document else None
    return HparamsFile(Path(path), editor, values, tuned_on)


def choose_hparams(editor_name: str, model_type: str, overrides: Mapping[str, Any] | None = None, *,
                   benchmark: str | None = None, file: HparamsFile | None = None,
                   hparams_dir: Path = DEFAULT_HPARAMS_DIR) -> ChosenHparams:
    """The editor's hyper-parameters for a model family and benchmark, with a file's values and
    `overrides` on top; refuses a file written for another editor."""
    editor, _ = split_setting(editor_name)
    if file is not None and file.editor != editor:
        raise HparamsError(f"{file.path} holds hyper-parameters for {file.editor}, not {editor}.")
    defaults = shipped_defaults(editor, model_type, benchmark, hparams_dir)
    layers = [*defaults.layers, *([file.layer] if file else []), override_layer(overrides)]
    tuned_on = file.tuned_on if file is not None and file.tuned_on is not None else defaults.tuned_on
    sources = tuple(layer.source for layer in layers if layer.values)
    return ChosenHparams(build_hparams(editor, layers), tuned_on, sources)


def hparams_file_text(editor: str, values: Mapping[str, Any], tuned_on: TunedOn, comment: str = "") -> str:
    """The text of a hyper-parameter file `read_hparams_file` accepts (the caller writes it)."""
    lines = [f"# {line}".rstrip() for line in comment.splitlines()]
    lines += [f"{EDITOR_KEY} = {_toml_value(editor)}",
              f"{TUNED_ON} = {{ " + ", ".join(f"{key} = {_toml_value(value)}"
                                             for key, value in tuned_on.to_dict().items()) + " }",
              "", f"[{VALUES_TABLE}]"]
    lines += [f"{key} = {_toml_value(value)}" for key, value in values.items()]
    return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    """TOML for the scalar and list values hyper-parameters have."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    if isinstance(value, float):
        return repr(value)  # shortest round-trip form, always with '.' or an exponent
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    raise TypeError(f"No TOML form for {value!r}.")
