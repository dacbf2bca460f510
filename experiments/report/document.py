"""The canonical report document, `report.json`: what a CLI run measured, and nothing rendered.

Every other file of a report folder (Markdown, CSV, HTML) is derived from this one, so a
report can always be re-rendered, and a reader can trust that the tables and the plots agree.

Layout (format 1):

    {"format": 1, "command": "compare", "arguments": {...}, "created": "<ISO 8601>",
     "runs": [RunRecord.to_dict(), ...], "analyses": {...}}

`analyses` holds command-specific extras; the keys the renderer understands are described in
`experiments.report.analyses`, any other key is shown verbatim as JSON.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

from experiments.records import RecordTypeError, RunRecord
from experiments.report.analyses import check_analyses
from experiments.report.errors import ReportError

REPORT_FORMAT = 1
REPORT_FILE = "report.json"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Report:
    """One CLI run's results: the run records plus the command's own analyses."""

    command: str  # e.g. "compare", "stress same-subject", "bench medical"
    arguments: Mapping[str, Any]  # the command's options, as given (JSON values only)
    runs: tuple[RunRecord, ...]
    analyses: Mapping[str, Any] = field(default_factory=dict)
    created: str = field(default_factory=_now)  # ISO 8601; also names the report folder
    format: int = REPORT_FORMAT

    def __post_init__(self) -> None:
        # Keep only what JSON can hold (tuples become lists, as they will after a round
        # trip), so a report equals its re-read self and a non-JSON value fails here, early.
        for name in ("arguments", "analyses"):
            object.__setattr__(self, name, _json_value(getattr(self, name), name))
        object.__setattr__(self, "runs", tuple(self.runs))
        if not self.runs:
            raise ReportError("The report holds no runs; there is nothing to show.")
        check_analyses(self.analyses, self.runs)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "command": self.command,
            "arguments": dict(self.arguments),
            "created": self.created,
            "runs": [run.to_dict() for run in self.runs],
            "analyses": dict(self.analyses),
        }

    def to_json(self) -> str:
        """Canonical JSON: sorted keys, two-space indent, strict (NaN raises ValueError)."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True, allow_nan=False)

    @classmethod
    def from_json(cls, text: str, source: str = REPORT_FILE) -> Report:
        """Parse a report document; `source` names the file in error messages."""
        try:
            data = json.loads(text, parse_constant=_refuse_constant)
        except json.JSONDecodeError as error:
            raise ReportError(
                f"{source} is not valid JSON (line {error.lineno}: {error.msg}).") from None
        except ValueError as error:
            raise ReportError(f"{source} is not strict JSON: {error}.") from None
        if not isinstance(data, dict):
            raise ReportError(f"{source} must hold a JSON object, not {type(data).__name__}.")
        for key, kind in (("format", int), ("command", str), ("arguments", dict),
                          ("created", str), ("runs", list), ("analyses", dict)):
            if key not in data:
                raise ReportError(f"{source} lacks the field {key!r}.")
            if not isinstance(data[key], kind):
                raise ReportError(f"{source}: field {key!r} must be a JSON {_json_kind(kind)}.")
        if data["format"] != REPORT_FORMAT:
            raise ReportError(f"{source} has report format {data['format']}; this version reads "
                              f"format {REPORT_FORMAT}.")
        runs = tuple(_run(item, number, source) for number, item in enumerate(data["runs"], start=1))
        try:
            return cls(command=data["command"], arguments=data["arguments"], runs=runs,
                       analyses=data["analyses"], created=data["created"], format=data["format"])
        except ReportError as error:  # no runs, or a malformed analysis: name the file
            raise ReportError(f"{source}: {error}") from None


def folder_name(report: Report) -> str:
    """`<created>-<command>`, e.g. `20260301-120000-compare`: the report folder's name."""
    return f"{_folder_stamp(report.created)}-{_slug(report.command)}"


def read_report(run_dir: str | Path) -> Report:
    """The report in `run_dir/report.json`; ReportError if it is missing or malformed."""
    path = Path(run_dir) / REPORT_FILE
    if not path.is_file():
        raise ReportError(
            f"No {REPORT_FILE} in {run_dir}; pass the folder a run wrote under reports/.")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ReportError(f"Cannot read {path}: {error}.") from None
    return Report.from_json(text, source=str(path))


def _run(item: Any, number: int, source: str) -> RunRecord:
    if not isinstance(item, dict):
        raise ReportError(f"{source}: run {number} must be a JSON object.")
    try:
        return RunRecord.from_dict(item)
    except KeyError as error:
        raise ReportError(f"{source}: run {number} lacks the field {error.args[0]!r}.") from None
    except RecordTypeError as error:
        raise ReportError(f"{source}: in run {number}, {error}.") from None
    except ValueError as error:  # a value of the right type that a record refuses (Settings)
        raise ReportError(f"{source}: run {number} is malformed ({error}).") from None


def _json_value(value: Any, name: str) -> Any:
    try:
        return json.loads(json.dumps(value, sort_keys=True, allow_nan=False))
    except (TypeError, ValueError) as error:
        raise ReportError(f"Report {name} must hold JSON values only (no NaN): {error}.") from None


def _refuse_constant(name: str) -> None:
    raise ValueError(f"it holds {name}, where a missing score must be null")


def _json_kind(kind: type) -> str:
    return {int: "integer", str: "string", dict: "object", list: "array"}[kind]


def _folder_stamp(created: str) -> str:
    try:
        return datetime.fromisoformat(created).strftime("%Y%m%d-%H%M%S")
    except ValueError:
        raise ReportError(
            f"Report creation time {created!r} is not an ISO 8601 timestamp.") from None


def _slug(command: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", command.lower()).strip("-") or "report"
