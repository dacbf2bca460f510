"""The canonical edit-set format: editscope's own record layout, both directions.

A canonical file is a JSON list of records (or JSONL, one record a line); its JSON Schema ships
as `data/schema/edit-set.schema.json`. A record:

    prompt            the edit prompt (required)
    target_new        the new answer (required; may be a long explanation)
    subject           a span of `prompt` (optional; locate-then-edit editors key on its last token)
    target_true       the old answer (optional; without it the P(new) > P(old) scores are absent)
    rephrase_prompts  list of paraphrases of `prompt` (generality)
    locality          named groups of {prompt, ground_truth} probes the edit must leave alone
    portability       named groups of {prompt, ground_truth} (kept in metadata; not scored yet)
    metadata          anything (copied into the request's metadata)

`canonical_request` reads one record (strictly: an unknown field is an error, since a misspelt
field would otherwise be silently ignored); `canonical_record` writes any `EditRequest` back, so
every shipped format converts to this one (`python cli.py convert IN OUT`).
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any, Mapping, Sequence

from data.formats import RecordProblem, _text
from data.requests import EditRequest, LocalityProbe
from lm.files import atomic_path

SCHEMA_FILE = Path(__file__).with_name("schema") / "edit-set.schema.json"

FIELDS = ("prompt", "target_new", "subject", "target_true", "rephrase_prompts", "locality",
          "portability", "metadata")

# Metadata keys the loader adds to every request (where it was read from). A converted record
# keeps them under metadata["source"] instead, so reading it back does not mistake them for
# the canonical file's own provenance.
LOADER_KEYS = ("benchmark", "split", "index")


def canonical_request(record: Mapping[str, Any], metadata: Mapping[str, Any]) -> EditRequest:
    """One canonical record as an `EditRequest`; `metadata` is what the loader adds."""
    unknown = [field for field in record if field not in FIELDS]
    if unknown:
        raise RecordProblem(
            f"has field {unknown[0]!r}, which the canonical format does not define (map another "
            "layout onto it with --fields)"
        )
    prompt = _text(record, "prompt")
    subject = _optional_text(record, "subject")
    if subject is not None and subject not in prompt:
        raise RecordProblem(f"has field 'subject' ({subject!r}) that does not occur in its prompt")
    extra = _object(record, "metadata")
    portability = _probe_groups(record, "portability")
    return EditRequest(
        prompt=prompt,
        target_new=_text(record, "target_new"),
        subject=subject,
        target_true=_optional_text(record, "target_true"),
        rephrase_prompts=_text_list(record, "rephrase_prompts"),
        locality=_probe_groups(record, "locality"),
        metadata={**extra,
                  **({"portability": _probe_group_json(portability)} if portability else {}),
                  **metadata},
    )


def canonical_record(request: EditRequest) -> dict[str, Any]:
    """The canonical record of a request (JSON-ready); `canonical_request` reads it back into
    the same prompt, targets, subject, rephrasings and locality probes."""
    metadata = {key: value for key, value in request.metadata.items()
                if key not in (*LOADER_KEYS, "portability")}
    source = {key: request.metadata[key] for key in LOADER_KEYS if key in request.metadata}
    if source and "source" not in metadata:
        metadata["source"] = source
    record: dict[str, Any] = {"prompt": request.prompt, "target_new": request.target_new}
    if request.subject is not None:
        record["subject"] = request.subject
    if request.target_true is not None:
        record["target_true"] = request.target_true
    if request.rephrase_prompts:
        record["rephrase_prompts"] = list(request.rephrase_prompts)
    if request.locality:
        record["locality"] = _probe_group_json(request.locality)
    if "portability" in request.metadata:
        record["portability"] = request.metadata["portability"]
    if metadata:
        record["metadata"] = _json_ready(metadata)
    return record


def write_edit_set(requests: Sequence[EditRequest], path: Path) -> None:
    """Write requests as a canonical file, atomically: JSONL when the name ends in .jsonl (or
    .jsonl.gz), else a JSON list; gzip-compressed when it ends in .gz."""
    path = Path(path)
    records = [canonical_record(request) for request in requests]
    if path.name.removesuffix(".gz").endswith(".jsonl"):
        text = "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records)
    else:
        text = json.dumps(records, ensure_ascii=False, indent=1) + "\n"
    data = text.encode("utf-8")
    with atomic_path(path) as temporary:
        temporary.write_bytes(gzip.compress(data, mtime=0) if path.suffix == ".gz" else data)


def _optional_text(record: Mapping[str, Any], field: str) -> str | None:
    return None if record.get(field) is None else _text(record, field)


def _object(record: Mapping[str, Any], field: str) -> Mapping[str, Any]:
    value = record.get(field, {})
    if not isinstance(value, dict):
        raise RecordProblem(f"has field {field!r} of type {type(value).__name__}, not an object")
    return value


def _text_list(record: Mapping[str, Any], field: str) -> tuple[str, ...]:
    value = record.get(field, [])
    if not isinstance(value, list):
        raise RecordProblem(f"has field {field!r} of type {type(value).__name__}, not a list of strings")
    for position, item in enumerate(value):
        if not isinstance(item, str) or not item.strip():
            raise RecordProblem(f"has an entry {position} in field {field!r} that is not a non-empty string")
    return tuple(value)


def _probe_groups(record: Mapping[str, Any], field: str) -> dict[str, tuple[LocalityProbe, ...]]:
    groups = {}
    for group, probes in _object(record, field).items():
        where = f"{field}.{group}"
        if not isinstance(probes, list) or not probes:
            raise RecordProblem(f"has field {where!r} that is not a non-empty list of probes")
        groups[group] = tuple(_probe(probe, f"{where}[{position}]") for position, probe in enumerate(probes))
    return groups


def _probe(probe: Any, where: str) -> LocalityProbe:
    if not isinstance(probe, dict) or set(probe) != {"prompt", "ground_truth"}:
        raise RecordProblem(f"has field {where!r} that is not an object with exactly 'prompt' and 'ground_truth'")
    for key in ("prompt", "ground_truth"):
        if not isinstance(probe[key], str) or not probe[key].strip():
            raise RecordProblem(f"has field '{where}.{key}' that is not a non-empty string")
    return LocalityProbe(probe["prompt"], probe["ground_truth"])


def _probe_group_json(groups: Mapping[str, Any]) -> dict[str, list[dict[str, str]]]:
    return {group: [{"prompt": probe.prompt, "ground_truth": probe.ground_truth} for probe in probes]
            for group, probes in groups.items()}


def _json_ready(value: Any) -> Any:
    """Tuples (e.g. zsRE's `answers`) as lists, so the record is plain JSON."""
    if isinstance(value, Mapping):
        return {str(key): _json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(item) for item in value]
    return value
