"""Field maps: read a benchmark file of any other record layout as canonical records.

A field map names, for each canonical field, the field of the user's records that holds it:

    --fields "target_new=answer,prompt=question,rephrase_prompts=paraphrase,\
locality.topic=locality_topic_prompt:locality_topic_ground_truth"

or the same as a small TOML file (`--fields my_map.toml`):

    prompt = "question"
    target_new = "answer"
    rephrase_prompts = ["paraphrase", "paraphrase_2"]   # each: a string or a list of strings
    [locality]
    topic = ["locality_topic_prompt", "locality_topic_ground_truth"]
    [portability]
    reasoning = ["portability_prompt", "portability_ground_truth"]
    [metadata]
    source_id = "id"

A canonical text field that is not mapped is taken from a record field of the same name when
there is one (so `subject`, `prompt`, `target_new` need no mapping when they are so named);
other record fields are ignored. A mapped field a record lacks is an error naming the record
and the field.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from data.formats import RecordProblem, _text
from lm.errors import UsageError

TEXT_FIELDS = ("prompt", "target_new", "subject", "target_true")
PROBE_FIELDS = ("locality", "portability")


class FieldMapError(UsageError):
    """A --fields value cannot be understood (one sentence says which part and why)."""


@dataclass(frozen=True)
class FieldMap:
    """Canonical field -> record field(s); `spec` is what the user wrote (for the report)."""

    spec: str
    texts: Mapping[str, str] = field(default_factory=dict)
    rephrase: tuple[str, ...] = ()
    probes: Mapping[str, Mapping[str, tuple[str, str]]] = field(default_factory=dict)  # locality/portability
    metadata: Mapping[str, str] = field(default_factory=dict)

    def canonical(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """The canonical record this map reads from `record` (RecordProblem names a missing field)."""
        out: dict[str, Any] = {}
        for name in TEXT_FIELDS:
            if name in self.texts:
                out[name] = self._mapped_text(record, self.texts[name], name)
            elif record.get(name) is not None:
                out[name] = record[name]
        if self.rephrase:
            out["rephrase_prompts"] = [prompt for source in self.rephrase
                                       for prompt in self._mapped_texts(record, source)]
        elif "rephrase_prompts" in record:
            out["rephrase_prompts"] = record["rephrase_prompts"]
        for kind in PROBE_FIELDS:
            groups = self.probes.get(kind, {})
            if groups:
                out[kind] = {group: [{"prompt": self._mapped_text(record, prompt, f"{kind}.{group}"),
                                      "ground_truth": self._mapped_text(record, truth, f"{kind}.{group}")}]
                             for group, (prompt, truth) in groups.items()}
            elif kind in record:
                out[kind] = record[kind]
        if self.metadata:
            out["metadata"] = {key: self._mapped_value(record, source, f"metadata.{key}")
                               for key, source in self.metadata.items()}
        return out

    @staticmethod
    def _mapped_value(record: Mapping[str, Any], source: str, target: str) -> Any:
        if source not in record:
            raise RecordProblem(f"is missing field {source!r} (mapped to {target})")
        return record[source]

    def _mapped_text(self, record: Mapping[str, Any], source: str, target: str) -> str:
        self._mapped_value(record, source, target)
        try:
            return _text(record, source)
        except RecordProblem as problem:
            raise RecordProblem(f"{problem} (mapped to {target})") from None

    def _mapped_texts(self, record: Mapping[str, Any], source: str) -> list[str]:
        value = self._mapped_value(record, source, "rephrase_prompts")
        return [self._mapped_text(record, source, "rephrase_prompts")] if not isinstance(value, list) else value


def parse_field_map(text: str) -> FieldMap:
    """A field map from a `--fields` value: a path to a .toml file, or `canonical=field,...`."""
    if text.strip().endswith(".toml"):
        path = Path(text.strip())
        try:
            table = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise FieldMapError(f"There is no field-map file at {path}.") from None
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
            raise FieldMapError(f"Field-map file {path} cannot be read as TOML ({error}).") from None
        return _from_table(table, str(path))
    table: dict[str, Any] = {}
    for part in (part.strip() for part in text.split(",")):
        if not part:
            continue
        key, equals, value = part.partition("=")
        key, value = key.strip(), value.strip()
        if not equals or not key or not value:
            raise FieldMapError(f"--fields part {part!r} is not of the form canonical_field=record_field.")
        kind, dot, group = key.partition(".")
        if dot:
            if kind in PROBE_FIELDS:
                prompt, colon, truth = value.partition(":")
                if not colon or not prompt or not truth:
                    raise FieldMapError(f"--fields part {part!r} needs prompt_field:ground_truth_field.")
                value = [prompt, truth]
            table.setdefault(kind, {})[group] = value
        else:
            table[key] = value
    return _from_table(table, text)


def _from_table(table: Mapping[str, Any], spec: str) -> FieldMap:
    texts, rephrase, probes, metadata = {}, (), {}, {}
    for key, value in table.items():
        if key in TEXT_FIELDS:
            texts[key] = _field_name(value, key)
        elif key == "rephrase_prompts":
            rephrase = tuple(_field_name(item, key) for item in (value if isinstance(value, list) else [value]))
        elif key in PROBE_FIELDS:
            probes[key] = {group: _probe_fields(pair, f"{key}.{group}") for group, pair in _table(value, key).items()}
        elif key == "metadata":
            metadata = {name: _field_name(source, f"metadata.{name}") for name, source in _table(value, key).items()}
        else:
            known = ", ".join((*TEXT_FIELDS, "rephrase_prompts", "locality.GROUP", "portability.GROUP", "metadata.KEY"))
            raise FieldMapError(f"Field map names {key!r}, which is not a canonical field ({known}).")
    if not (texts or rephrase or probes or metadata):
        raise FieldMapError(f"Field map {spec!r} maps no field.")
    return FieldMap(spec, texts, rephrase, probes, metadata)


def _field_name(value: Any, key: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise FieldMapError(f"Field map entry {key!r} must name a record field, not {value!r}.")
    return value.strip()


def _table(value: Any, key: str) -> Mapping[str, Any]:
    if not isinstance(value, dict) or not value:
        raise FieldMapError(f"Field map entry {key!r} must be a table of named groups.")
    return value


def _probe_fields(pair: Any, key: str) -> tuple[str, str]:
    if not (isinstance(pair, list) and len(pair) == 2):
        raise FieldMapError(f"Field map entry {key!r} must be [prompt_field, ground_truth_field].")
    return _field_name(pair[0], key), _field_name(pair[1], key)
