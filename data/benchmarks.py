"""Named benchmarks shipped under `data/files/`, and the loader that turns a benchmark file into
`EditRequest`s.

`load_benchmark("counterfact")` reads a shipped split; `load_benchmark("my_edits.json")` reads
any local file (JSON list or JSONL, plain or gzip-compressed) in one of the published record
formats or the canonical one (data/canonical.py), recognised from its fields; with a field map
(data/field_maps.py) it reads any other layout. Nothing is cached: a caller that needs a split
twice keeps the list.
"""

from __future__ import annotations

import gzip
import json
import zlib
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

from data.canonical import canonical_request
from data.field_maps import FieldMap
from data.formats import CANONICAL, FORMATS, Converter, RecordProblem, detect_format
from data.requests import EditRequest
from lm.errors import UsageError


class BenchmarkError(UsageError):
    """A benchmark name, split, file or record cannot be used (one sentence says which and why)."""


@dataclass(frozen=True)
class Benchmark:
    """A benchmark shipped with the project: its record format and the splits it comes in."""

    name: str
    format: str
    splits: tuple[str, ...]
    default_split: str
    title: str


BENCHMARKS: Mapping[str, Benchmark] = MappingProxyType({
    benchmark.name: benchmark
    for benchmark in (
        Benchmark("counterfact", "counterfact", ("train", "test"), "test",
                  "CounterFact, MEND/RECIPE layout"),
        Benchmark("zsre", "zsre", ("train",), "train",
                  "zsRE question answering, MEND layout, 1000-record training subset"),
        Benchmark("medcf", "medcf", ("train", "valid", "test"), "test",
                  "MedCF medical counterfactuals (MedLaSA)"),
        Benchmark("medcfpp", "medcf", ("train", "test"), "test",
                  "MedCF++: MedCF without records whose own locality prompt is the edit prompt"),
        Benchmark("medversa", "medversa", ("train", "valid", "test"), "test",
                  "MedVersa medical question edits (MedREK)"),
    )
})

FILES_DIR = Path(__file__).with_name("files")


def benchmark_names() -> tuple[str, ...]:
    """Names accepted by `load_benchmark`, in a stable order."""
    return tuple(BENCHMARKS)


def shipped_file(name: str, split: str) -> Path:
    """Where the compressed copy of a shipped benchmark split lives."""
    return FILES_DIR / name / f"{split}.json.gz"


def load_benchmark(name_or_path: str, split: str | None = None,
                   fields: FieldMap | None = None) -> list[EditRequest]:
    """Edit requests of a shipped benchmark split, or of a benchmark file at a path (read
    through `fields` when given).

    Every request's metadata holds `benchmark` (the name; for a file the detected published
    format, or the file's name for a canonical or field-mapped file), `split` (None for a file)
    and `index` (the record's position in the file).
    """
    benchmark = BENCHMARKS.get(name_or_path)
    if benchmark is not None and fields is not None:
        raise BenchmarkError(f"A field map (--fields) applies to a benchmark file, not to the shipped {name_or_path!r}.")
    if benchmark is not None:
        chosen = benchmark.default_split if split is None else split
        if chosen not in benchmark.splits:
            raise BenchmarkError(
                f"Benchmark {benchmark.name!r} has no split {chosen!r}; "
                f"its splits are {', '.join(benchmark.splits)}."
            )
        path = shipped_file(benchmark.name, chosen)
        return _requests_from_records(_read_records(path), path, benchmark.format,
                                      benchmark.name, chosen)
    path = Path(name_or_path)
    if not (path.exists() or path.suffix in (".json", ".jsonl", ".gz")):
        raise BenchmarkError(
            f"Unknown benchmark {name_or_path!r}; choose one of {', '.join(BENCHMARKS)} "
            "or give the path of a .json, .jsonl or .gz file."
        )
    if split is not None:
        raise BenchmarkError(f"A split ({split!r}) applies to a named benchmark, not to {path}.")
    records = _read_records(path)
    if fields is not None:
        return _requests_from_records(records, path, CANONICAL, file_label(path), None, fields)
    try:
        record_format = detect_format(_as_object(records[0], 0, path))
    except RecordProblem as problem:
        raise BenchmarkError(f"Record 0 of {path} {problem}.") from None
    label = file_label(path) if record_format == CANONICAL else record_format
    return _requests_from_records(records, path, record_format, label, None)


def file_label(path: Path) -> str:
    """A benchmark file's name without its .json/.jsonl/.gz suffixes (how reports name it)."""
    name = path.name
    for suffix in (".gz", ".jsonl", ".json"):
        name = name.removesuffix(suffix)
    return name or path.name


def is_jsonl(path: Path) -> bool:
    return path.name.removesuffix(".gz").endswith(".jsonl")


def _read_records(path: Path) -> list[Any]:
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except FileNotFoundError:
        raise BenchmarkError(f"There is no benchmark file at {path}.") from None
    except (OSError, EOFError, zlib.error) as error:
        raise BenchmarkError(f"{path} cannot be read as a benchmark file ({error}).") from None
    try:
        if is_jsonl(path):
            # JSONL: one record per non-blank line; a bad line is reported by its line number.
            records = []
            for number, line in enumerate(raw.decode("utf-8").splitlines(), start=1):
                if line.strip():
                    try:
                        records.append(json.loads(line))
                    except json.JSONDecodeError as error:
                        raise BenchmarkError(f"Line {number} of {path} is not valid JSON ({error.msg}).") from None
        else:
            records = json.loads(raw)
    except UnicodeDecodeError:
        raise BenchmarkError(f"{path} is not UTF-8 text, so it cannot be JSON.") from None
    except json.JSONDecodeError as error:
        raise BenchmarkError(
            f"{path} is not valid JSON ({error.msg} at line {error.lineno}, column {error.colno})."
        ) from None
    if not isinstance(records, list):
        raise BenchmarkError(f"{path} holds a JSON {_json_kind(records)}, not a list of records.")
    if not records:
        raise BenchmarkError(f"{path} holds an empty list, but a benchmark needs a record.")
    return records


def _requests_from_records(records: list[Any], path: Path, record_format: str,
                           benchmark: str, split: str | None,
                           fields: FieldMap | None = None) -> list[EditRequest]:
    convert: Converter = canonical_request if record_format == CANONICAL else FORMATS[record_format][1]
    requests = []
    for index, record in enumerate(records):
        metadata = {"benchmark": benchmark, "split": split, "index": index}
        try:
            record = _as_object(record, index, path)
            request = convert(record if fields is None else fields.canonical(record), metadata)
        except RecordProblem as problem:
            raise BenchmarkError(f"Record {index} of {path} {problem}.") from None
        if request is not None:
            requests.append(request)
    if not requests:
        raise BenchmarkError(f"{path} holds no record that asks for an edit.")
    return requests


def _as_object(record: Any, index: int, path: Path) -> Mapping[str, Any]:
    if not isinstance(record, dict):
        raise BenchmarkError(
            f"Record {index} of {path} is a JSON {_json_kind(record)}, not an object."
        )
    return record


def _json_kind(value: Any) -> str:
    """The JSON name of a parsed value's type, for error messages."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return {dict: "object", list: "array", str: "string"}.get(type(value), "null")
