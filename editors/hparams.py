"""Hyper-parameters of the locate-then-edit editors: frozen dataclasses and their loader.

Defaults live in `editors/hparams/<editor>.toml`, one table per architecture family. The
family comes from `config.model_type` through one small table (never from a model name), and
CLI-style overrides ("v_lr=0.3", "layers=2-8") are parsed and type-checked against the
dataclass fields. Every bad file, key, type or value is reported in one sentence naming its
source (the file and table, or the override) and the key.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal, Mapping, Sequence

from editors.solve import SpreadRule
from lm.adapters import ADAPTERS, adapter_for_type
from lm.errors import UsageError
from lm.precision import bf16_is_fast

DEFAULT_HPARAMS_DIR = Path(__file__).parent / "hparams"

KeyToken = Literal["subject_last", "prompt_last"]
Grouping = Literal["subject", "key_distance"]
# "auto" is resolved when the hparams are built (`Hparams.__post_init__`): bfloat16 where the CPU
# multiplies it natively (lm.precision.bf16_is_fast), else float32, so records, value caches and
# `plan` always see the dtype that ran.
ComputeDtype = Literal["float32", "bfloat16", "auto"]
NullSpaceRule = Literal["energy", "threshold"]
# (field name, predicate the value must satisfy, the rule in words for the error message)
Constraint = tuple[str, Callable[[Any], bool], str]


class HparamsError(UsageError):
    """A hyper-parameter file, table, key, type, value or override is wrong."""


class InvalidValueError(HparamsError):
    """A field holds a value of the right type outside its allowed range."""

    def __init__(self, key: str, rule: str) -> None:
        super().__init__(f"key '{key}' must be {rule}")
        self.key = key


@dataclass(frozen=True, kw_only=True)
class Hparams:
    """Base of every editor's hyper-parameters: record form, value checks, layer range."""

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready form for result records (tuples become lists)."""
        record = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            record[field.name] = list(value) if isinstance(value, tuple) else value
        return record

    def file_values(self) -> dict[str, Any]:
        """`to_dict()` as a hyper-parameter file should hold it: a dtype that was "auto" is written
        "auto" again, so a file tuned on a bf16-fast CPU does not force bf16 on one without."""
        return {**self.to_dict(), **dict.fromkeys(self._auto_dtypes, "auto")}

    def __post_init__(self) -> None:
        auto_dtypes = []
        for field in dataclasses.fields(self):  # annotations are strings (`from __future__`)
            if field.type == "ComputeDtype" and getattr(self, field.name) == "auto":
                object.__setattr__(self, field.name, "bfloat16" if bf16_is_fast() else "float32")
                auto_dtypes.append(field.name)
        # Not a field: records and comparisons see only the resolved dtype.
        object.__setattr__(self, "_auto_dtypes", tuple(auto_dtypes))
        for name, is_valid, rule in self._constraints():
            if not is_valid(getattr(self, name)):
                raise InvalidValueError(name, rule)

    def _constraints(self) -> list[Constraint]:
        return []

    @property
    def edited_layers(self) -> tuple[int, ...]:
        """Every layer whose weights the editor rewrites."""
        raise NotImplementedError

    def tuning_axes(self, num_layers: int) -> tuple["TuningAxis", ...]:
        """The few settings `editscope tune` searches, each with candidates around the current
        value (relative, so they suit any model's scale), cheapest to change first."""
        return ()

    def check_fits(self, num_layers: int) -> None:
        """Refuse layers the model does not have (the files cannot know the model's depth)."""
        too_deep = [layer for layer in self.edited_layers if layer >= num_layers]
        if too_deep:
            raise HparamsError(
                f"Layer {too_deep[0]} is out of range for a model with {num_layers} layers; "
                "override the layers for this model."
            )


@dataclass(frozen=True)
class TuningAxis:
    """One searched setting: the field and the values tried (the current value among them)."""

    field: str
    values: tuple[Any, ...]


def _scaled(value: float, factors: Sequence[float]) -> tuple[float, ...]:
    return tuple(dict.fromkeys(float(f"{value * factor:.4g}") for factor in factors))


def _layer_windows(layers: tuple[int, ...], num_layers: int) -> tuple[tuple[int, ...], ...]:
    """The window itself, shifted one layer down and up (l* moves: new value vectors), one
    layer narrower and one wider at the bottom (l* stays: the value vectors are reused)."""
    first, last = layers[0], layers[-1]
    windows = (layers, tuple(range(first - 1, last)), tuple(range(first + 1, last + 2)),
               tuple(range(first + 1, last + 1)), tuple(range(first - 1, last + 1)))
    return tuple(dict.fromkeys(w for w in windows if w and w[0] >= 0 and w[-1] < num_layers))


def _value_axes(hparams: "ValueOptimisationHparams") -> tuple[TuningAxis, ...]:
    return (TuningAxis("v_lr", _scaled(hparams.v_lr, (1, 0.5, 2))),
            TuningAxis("v_num_grad_steps", (hparams.v_num_grad_steps, 2 * hparams.v_num_grad_steps)))


def _positive(*names: str) -> list[Constraint]:
    """Each of the fields `names` must be above 0."""
    return [(name, lambda value: value > 0, "positive") for name in names]


def _non_negative(*names: str) -> list[Constraint]:
    """Each of the fields `names` must be 0 or above."""
    return [(name, lambda value: value >= 0, "non-negative") for name in names]


def _increasing_layers(layers: tuple[int, ...]) -> bool:
    return len(layers) > 0 and layers[0] >= 0 and all(a < b for a, b in zip(layers, layers[1:]))


@dataclass(frozen=True, kw_only=True)
class ValueOptimisationHparams(Hparams):
    """Keys, context templates and the `z` optimisation shared by every key–value editor.

    `layers` are the edited layers in ascending order; the value vectors are optimised at the
    last of them (`last_layer`). The loss is read from the model's final layer, which the
    architecture adapter knows, so the reference's `v_loss_layer` is not a setting here.
    """

    layers: tuple[int, ...]
    v_num_grad_steps: int
    v_lr: float
    v_weight_decay: float
    clamp_norm_factor: float
    kl_factor: float
    early_stop_loss: float = 0.05
    key_token: KeyToken = "subject_last"
    n_templates: int = 5  # model-generated context prefixes (seeded, cached per model)
    template_len: int = 10  # tokens per generated prefix
    template_seed: int = 0
    mom2_tokens: int = 100_000  # covariance token budget (§2: 1e5–2e6 suffices for small models)
    v_dtype: ComputeDtype = "float32"  # precision of the value optimisation's forward/backward

    @property
    def last_layer(self) -> int:
        """l*, the layer whose block output receives the optimised δ."""
        return self.layers[-1]

    @property
    def edited_layers(self) -> tuple[int, ...]:
        return self.layers

    def _constraints(self) -> list[Constraint]:
        return (super()._constraints()
                + [("layers", _increasing_layers, "a non-empty, strictly increasing list of layer indices >= 0")]
                + _positive("v_num_grad_steps", "v_lr", "clamp_norm_factor", "template_len", "mom2_tokens")
                + _non_negative("v_weight_decay", "kl_factor", "early_stop_loss", "n_templates"))


@dataclass(frozen=True, kw_only=True)
class MemitHparams(ValueOptimisationHparams):
    """MEMIT: λ (`mom2_update_weight`) weighs the preserved keys' covariance against the edit."""

    mom2_update_weight: float
    spread_rule: SpreadRule = "linear"

    def tuning_axes(self, num_layers: int) -> tuple[TuningAxis, ...]:
        # λ and the lower layers only change the closed-form solve (cheap: values are reused).
        return (TuningAxis("mom2_update_weight", _scaled(self.mom2_update_weight, (1, 1 / 3, 3))),
                TuningAxis("layers", _layer_windows(self.layers, num_layers)), *_value_axes(self))

    def _constraints(self) -> list[Constraint]:
        return super()._constraints() + _non_negative("mom2_update_weight")


@dataclass(frozen=True, kw_only=True)
class PmetHparams(MemitHparams):
    """PMET: separate attention and MLP vectors, square-root spread, NLL down-weighting.

    `attn_decay_weight` / `mlp_decay_weight` scale each vector's weight-decay term (each decays
    relative to its own initial norm); `argmax_nll_weight` is the NLL weight of a request whose
    target is already the argmax (reference: 0.1). A request's optimisation stops once its
    target is the argmax at every target token and its KL term is at most `argmax_stop_kl`
    (reference: 0.01), besides the loss-based stop every editor has.
    """

    spread_rule: SpreadRule = "sqrt"
    attn_decay_weight: float = 1.0
    mlp_decay_weight: float = 1.0
    argmax_nll_weight: float = 0.1
    argmax_stop_kl: float = 0.01

    def _constraints(self) -> list[Constraint]:
        return (super()._constraints()
                + _non_negative("attn_decay_weight", "mlp_decay_weight", "argmax_stop_kl")
                + [("argmax_nll_weight", lambda w: 0 <= w <= 1, "between 0 and 1")])


@dataclass(frozen=True, kw_only=True)
class MergeHparams(MemitHparams):
    """MEMIT-Merge: one shared δ per group of requests, with its own optimisation budget.

    Grouping "subject" merges requests with the same subject text (the paper); "key_distance"
    also merges requests whose keys at the last edited layer lie within
    `key_distance_threshold` × (mean key norm of the batch) of each other — relative, so one
    threshold fits every model width.
    """

    grouping: Grouping = "subject"
    key_distance_threshold: float = 0.25
    shared_v_num_grad_steps: int
    shared_v_lr: float
    shared_clamp_norm_factor: float

    def _constraints(self) -> list[Constraint]:
        return (super()._constraints() + _non_negative("key_distance_threshold")
                + _positive("shared_v_num_grad_steps", "shared_v_lr", "shared_clamp_norm_factor"))


@dataclass(frozen=True, kw_only=True)
class AlphaEditHparams(ValueOptimisationHparams):
    """AlphaEdit: MEMIT's keys, its own value settings, the update projected onto the
    covariance's (approximate) null space.

    `nullspace_rule` "energy" keeps the largest set of smallest-eigenvalue directions of C
    holding at most `nullspace_energy` of trace(C), the preserved keys' energy (scale-free);
    "threshold" keeps the eigenvalues below `nullspace_threshold` (the reference's absolute
    rule, set for Llama-3-8B). `alpha` regularises the projected solve.
    """

    nullspace_rule: NullSpaceRule = "energy"
    nullspace_energy: float = 0.01
    nullspace_threshold: float = 2e-2
    alpha: float = 10.0

    def tuning_axes(self, num_layers: int) -> tuple[TuningAxis, ...]:
        # The share and α only change the projected solve (cheap: the values are reused); α, like
        # the reference's τ, was set for Llama-3-8B's key scale, so it is searched too.
        shares = (self.nullspace_energy, 0.001, 0.003, 0.03, 0.1)
        return (TuningAxis("nullspace_energy", tuple(dict.fromkeys(shares))),
                TuningAxis("alpha", _scaled(self.alpha, (1, 0.1, 0.01))),
                TuningAxis("layers", _layer_windows(self.layers, num_layers)), *_value_axes(self))

    @property
    def nullspace_value(self) -> float:
        """The parameter of the chosen rule."""
        return self.nullspace_energy if self.nullspace_rule == "energy" else self.nullspace_threshold

    def _constraints(self) -> list[Constraint]:
        return (super()._constraints() + _positive("nullspace_threshold", "alpha")
                + [("nullspace_energy", lambda share: 0 < share <= 1, "in (0, 1]")])


@dataclass(frozen=True, kw_only=True)
class FtHparams(Hparams):
    """FT-L: fine-tune one layer's MLP output projection under an L∞ bound on its change."""

    layer: int
    lr: float
    steps: int
    norm_constraint: float
    dtype: ComputeDtype = "float32"  # forward/backward precision of the private copy; the change stays fp32

    @property
    def edited_layers(self) -> tuple[int, ...]:
        return (self.layer,)

    def tuning_axes(self, num_layers: int) -> tuple[TuningAxis, ...]:
        layers = tuple(layer for layer in (self.layer, self.layer - 1, self.layer + 1) if 0 <= layer < num_layers)
        return (TuningAxis("norm_constraint", _scaled(self.norm_constraint, (1, 0.5, 2))),
                TuningAxis("lr", _scaled(self.lr, (1, 1 / 3, 3))), TuningAxis("layer", layers),
                TuningAxis("steps", (self.steps, 2 * self.steps)))

    def _constraints(self) -> list[Constraint]:
        return (super()._constraints() + [("layer", lambda layer: layer >= 0, "a layer index >= 0")]
                + _positive("lr", "steps", "norm_constraint"))


# editor name (as typed on the CLI, '-' or '_') -> (file stem, dataclass)
EDITOR_HPARAMS: Mapping[str, tuple[str, type[Hparams]]] = types.MappingProxyType(
    {
        "memit": ("memit", MemitHparams),
        "pmet": ("pmet", PmetHparams),
        "memit_merge": ("memit_merge", MergeHparams),
        "alphaedit": ("alphaedit", AlphaEditHparams),
        "ft_l": ("ft_l", FtHparams),
    }
)


def family_of(model_type: str) -> str:
    """The hparams family of an HF `config.model_type`: its architecture adapter's (families
    share module layout and scale)."""
    return adapter_for_type(model_type).family


@dataclass(frozen=True)
class TunedOn:
    """Where a table of defaults was chosen: the model (its name, and its weight fingerprint
    when it was tuned here), the benchmark, and free-form details (split, records, score …)."""

    model: str
    benchmark: str
    fingerprint: str | None = None
    details: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def describe(self) -> str:
        return f"{self.model} / {self.benchmark}"

    def to_dict(self) -> dict[str, Any]:
        described = {"model": self.model, "benchmark": self.benchmark, **self.details}
        return described if self.fingerprint is None else {**described, "fingerprint": self.fingerprint}

    @classmethod
    def parse(cls, raw: Any, source: str) -> "TunedOn":
        """From a `tuned_on = { model = "...", benchmark = "...", ... }` entry."""
        if not isinstance(raw, dict) or not all(isinstance(raw.get(key), str) for key in ("model", "benchmark")):
            raise HparamsError(f"{source}: 'tuned_on' must be a table naming the model and the benchmark "
                               "the values were tuned on (model = \"...\", benchmark = \"...\").")
        details = {key: value for key, value in raw.items() if key not in ("model", "benchmark", "fingerprint")}
        fingerprint = raw.get("fingerprint")
        return cls(raw["model"], raw["benchmark"], str(fingerprint) if fingerprint else None, details)


@dataclass(frozen=True)
class ValueLayer:
    """One layer of values on the way to an editor's hyper-parameters: where they come from and
    the raw entries (file values already typed by TOML; overrides possibly CLI text)."""

    source: str
    values: Mapping[str, Any]
    from_text: bool = False  # CLI overrides: strings are parsed as the field's type


@dataclass(frozen=True)
class ShippedDefaults:
    """The defaults `editors/hparams/<editor>.toml` gives a model family (and a benchmark)."""

    layers: tuple[ValueLayer, ...]  # the family table, then the benchmark table if one applies
    tuned_on: TunedOn


# Keys of a shipped table that are not hyper-parameters.
TUNED_ON = "tuned_on"
SERVES = "benchmarks"  # a benchmark table: the benchmarks it is the default for


def shipped_defaults(editor_name: str, model_type: str, benchmark: str | None = None,
                     hparams_dir: Path = DEFAULT_HPARAMS_DIR) -> ShippedDefaults:
    """The family table of the editor's shipped file, and the benchmark table below it (e.g.
    [llama.medcfpp]) whose `benchmarks` list names `benchmark`, if any."""
    stem, _ = _editor_entry(editor_name)
    family = family_of(model_type)
    path = Path(hparams_dir) / f"{stem}.toml"
    table = _read_family_table(path, family, model_type)
    source = f"{path} [{family}]"
    values = {key: value for key, value in table.items() if not isinstance(value, dict) and key != TUNED_ON}
    layers, tuned_on = [ValueLayer(source, values)], TunedOn.parse(table.get(TUNED_ON), source)
    for name, sub_table in table.items():
        if not isinstance(sub_table, dict) or name == TUNED_ON:
            continue
        sub_source = f"{path} [{family}.{name}]"
        serves = sub_table.get(SERVES, [name])
        if not isinstance(serves, list) or not all(isinstance(item, str) for item in serves):
            raise HparamsError(f"{sub_source}: '{SERVES}' must be a list of benchmark names.")
        sub_tuned_on = TunedOn.parse(sub_table.get(TUNED_ON), sub_source)
        if benchmark is not None and benchmark in serves:
            sub_values = {key: value for key, value in sub_table.items() if key not in (TUNED_ON, SERVES)}
            layers.append(ValueLayer(sub_source, sub_values))
            tuned_on = sub_tuned_on
    return ShippedDefaults(tuple(layers), tuned_on)


def load_hparams(
    editor_name: str,
    model_type: str,
    overrides: Mapping[str, Any] | None = None,
    *,
    benchmark: str | None = None,
    hparams_dir: Path = DEFAULT_HPARAMS_DIR,
) -> Hparams:
    """The editor's defaults for the model's family (and `benchmark`'s table, if the file has
    one for it), with `overrides` applied on top.

    Override values may be strings as typed on the CLI ("0.3", "2-8", "subject_last") or typed
    Python values; both are checked against the field's type.
    """
    defaults = shipped_defaults(editor_name, model_type, benchmark, hparams_dir)
    return build_hparams(editor_name, [*defaults.layers, override_layer(overrides)])


def override_layer(overrides: Mapping[str, Any] | None) -> ValueLayer:
    return ValueLayer("Override", dict(overrides or {}), from_text=True)


def build_hparams(editor_name: str, layers: Sequence[ValueLayer]) -> Hparams:
    """The editor's dataclass from value layers applied in order (later ones win); every key and
    value is checked and a bad one named with the layer it came from."""
    _, hparams_class = _editor_entry(editor_name)
    values: dict[str, Any] = {}
    origin: dict[str, str] = {}  # where each value came from, for error messages
    for layer in layers:
        for key, raw in layer.values.items():
            source = f"{layer.source} '{key}={raw}'" if layer.from_text else layer.source
            values[key] = check_value(hparams_class, key, raw, source, layer.from_text)
            origin[key] = source
    missing = [
        field.name
        for field in dataclasses.fields(hparams_class)
        if field.name not in values
        and field.default is dataclasses.MISSING
        and field.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise HparamsError(f"{layers[0].source}: missing key '{missing[0]}'.")
    try:
        return hparams_class(**values)
    except InvalidValueError as error:
        raise HparamsError(f"{origin.get(error.key, layers[0].source)}: {error}.") from None


def check_value(hparams_class: type[Hparams], key: str, raw: Any, source: str, from_text: bool = False) -> Any:
    """`raw` as the type of field `key` of `hparams_class`; HparamsError naming `source` if the
    key is unknown or the value has the wrong type."""
    field_names = [field.name for field in dataclasses.fields(hparams_class)]
    _require_known(key, field_names, source)
    annotation = typing.get_type_hints(hparams_class)[key]
    parsed = _parse_text(raw, annotation, key, source) if from_text and isinstance(raw, str) else raw
    return _coerce(parsed, annotation, key, source)


def hparams_class_of(editor_name: str) -> type[Hparams]:
    return _editor_entry(editor_name)[1]


def parse_override_args(args: Sequence[str]) -> dict[str, str]:
    """Turn CLI arguments like ["v_lr=0.3", "layers=2-8"] into {"v_lr": "0.3", "layers": "2-8"}."""
    parsed: dict[str, str] = {}
    for arg in args:
        key, separator, value = arg.partition("=")
        if not separator or not key.strip():
            raise HparamsError(f"Override '{arg}' is not of the form key=value.")
        parsed[key.strip()] = value.strip()
    return parsed


def _editor_entry(editor_name: str) -> tuple[str, type[Hparams]]:
    normalised = editor_name.strip().lower().replace("-", "_")
    if normalised not in EDITOR_HPARAMS:
        raise HparamsError(f"No hyper-parameters for editor '{editor_name}' "
                           f"(known: {', '.join(sorted(EDITOR_HPARAMS))}).")
    return EDITOR_HPARAMS[normalised]


def _read_family_table(path: Path, family: str, model_type: str) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            document = tomllib.load(handle)
    except FileNotFoundError:
        raise HparamsError(f"{path}: hyper-parameter file not found.") from None
    except tomllib.TOMLDecodeError as error:
        raise HparamsError(f"{path}: not valid TOML ({error}).") from None
    families = sorted({adapter.family for adapter in ADAPTERS.values()})
    for name, table in document.items():
        if name not in families or not isinstance(table, dict):
            raise HparamsError(
                f"{path}: unknown top-level key '{name}' (expected family tables: "
                f"{', '.join(families)})."
            )
    if family not in document:
        raise HparamsError(f"{path}: no [{family}] table for model type '{model_type}'.")
    return document[family]


def _require_known(key: str, field_names: list[str], source: str) -> None:
    if key not in field_names:
        raise HparamsError(f"{source}: unknown key '{key}' (known keys: {', '.join(field_names)}).")


def _type_name(annotation: Any) -> str:
    if typing.get_origin(annotation) is Literal:
        return "one of " + ", ".join(repr(choice) for choice in typing.get_args(annotation))
    if typing.get_origin(annotation) is tuple:
        return "a list of integers"
    names = {int: "an integer", float: "a finite number", str: "a string"}
    return names[annotation]


def _coerce(value: Any, annotation: Any, key: str, source: str) -> Any:
    """Check `value` against the field type, widening int->float and list->tuple."""

    def wrong() -> HparamsError:
        return HparamsError(
            f"{source}: key '{key}' must be {_type_name(annotation)}, got {value!r}."
        )

    if typing.get_origin(annotation) is Literal:
        if value not in typing.get_args(annotation):
            raise wrong()
        return value
    if typing.get_origin(annotation) is tuple:
        if not isinstance(value, (list, tuple)) or not all(
            isinstance(item, int) and not isinstance(item, bool) for item in value
        ):
            raise wrong()
        return tuple(value)
    # bool is a subclass of int in Python; a TOML `true` is never a number.
    if isinstance(value, bool):
        raise wrong()
    if annotation is float and isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise wrong()
        return float(value)
    if not isinstance(value, annotation):
        raise wrong()
    return value


def _parse_text(text: str, annotation: Any, key: str, source: str) -> Any:
    """Read a CLI string as the field's type: numbers and layer lists; other text stays text."""
    text = text.strip()
    try:
        if typing.get_origin(annotation) is tuple:
            return parse_layers(text)
        if annotation is int:
            return int(text)
        if annotation is float:
            return float(text)
    except ValueError:
        raise HparamsError(
            f"{source}: key '{key}' must be {_type_name(annotation)}, got {text!r}."
        ) from None
    return text


def parse_layers(text: str) -> tuple[int, ...]:
    """Layers from an inclusive range "2-8", a list "2,4,6" or "[2, 4, 6]", or one index "5"."""
    text = text.strip("[]() ")
    start, dash, stop = text.partition("-")
    if dash and start.strip() and "," not in text:
        return tuple(range(int(start), int(stop) + 1))
    return tuple(int(part) for part in text.split(",") if part.strip())
