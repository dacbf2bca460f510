"""The record formats of the published benchmark files and how a record becomes an `EditRequest`.

Each converter reads and checks the fields it needs in one pass, raising `RecordProblem` (the
field and what is wrong with it); the loader adds the file name and record index to make the
user-facing sentence. `detect_format` picks a format from the fields of a record.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any, Callable, Mapping

from data.requests import EditRequest, LocalityProbe


class RecordProblem(Exception):
    """What is wrong with one record, as a verb phrase naming the field ("is missing field 'x'").

    The loader turns it into a sentence by prefixing the file name and record index.
    """


Converter = Callable[[Mapping[str, Any], Mapping[str, Any]], "EditRequest | None"]

# MedCF's four locality probes, as (group name used in EditRequest.locality, field infix).
# The group names are the paper's sub-metrics: target distribution, entity mapping,
# structural similarity, textual similarity.
MEDCF_LOCALITY_GROUPS = (("td", "target"), ("em", "mapping"), ("ss", "struc"), ("ts", "tokenSem"))


def _text(record: Mapping[str, Any], field: str) -> str:
    if field not in record:
        raise RecordProblem(f"is missing field {field!r}")
    value = record[field]
    if not isinstance(value, str):
        raise RecordProblem(f"has field {field!r} of type {type(value).__name__}, not a string")
    if not value.strip():
        raise RecordProblem(f"has an empty field {field!r}")
    return value


def _integer(record: Mapping[str, Any], field: str) -> int:
    if field not in record:
        raise RecordProblem(f"is missing field {field!r}")
    value = record[field]
    # bool is a subclass of int in Python, but `true` is never a valid id.
    if not isinstance(value, int) or isinstance(value, bool):
        raise RecordProblem(f"has field {field!r} of type {type(value).__name__}, not an integer")
    return value


def _subject_in_prompt(record: Mapping[str, Any], prompt: str) -> str:
    subject = _text(record, "subject")
    if subject not in prompt:
        raise RecordProblem(f"has field 'subject' ({subject!r}) that does not occur in its prompt")
    return subject


def _probe(record: Mapping[str, Any], prompt_field: str, truth_field: str) -> LocalityProbe:
    return LocalityProbe(_text(record, prompt_field), _text(record, truth_field))


def _counterfact_fields(record: Mapping[str, Any]) -> dict[str, Any]:
    """The fields CounterFact and MedCF name alike: prompt, targets, subject, one rephrase."""
    prompt = _text(record, "prompt")
    return dict(
        prompt=prompt,
        target_new=_text(record, "target_new"),
        subject=_subject_in_prompt(record, prompt),
        target_true=_text(record, "ground_truth"),
        rephrase_prompts=(_text(record, "rephrase_prompt"),),
    )


def counterfact_request(record: Mapping[str, Any], metadata: Mapping[str, Any]) -> EditRequest:
    """CounterFact in the MEND/RECIPE layout: one rephrase, one neighbourhood probe per record."""
    return EditRequest(
        **_counterfact_fields(record),
        locality={"default": (_probe(record, "locality_prompt", "locality_ground_truth"),)},
        metadata={**metadata, "case_id": _integer(record, "case_id")},
    )


def zsre_request(record: Mapping[str, Any], metadata: Mapping[str, Any]) -> EditRequest | None:
    """zsRE in the MEND layout; returns None for a record that asks for no edit (see below)."""
    prompt = _text(record, "src")
    subject = _text(record, "subject")
    rephrase = _text(record, "rephrase")
    locality = {"default": (_probe(record, "loc", "loc_ans"),)}
    if "answers" not in record:
        raise RecordProblem("is missing field 'answers'")
    answers = record["answers"]
    if not (isinstance(answers, list) and answers and isinstance(answers[0], str)):
        raise RecordProblem("has a field 'answers' that is not a list of strings")
    if not answers[0].strip():
        raise RecordProblem("has an empty first answer in field 'answers'")
    # The published MEND file marks "no counterfactual answer was generated" with alt == ""
    # (records 534 and 723 of the shipped 1000). Such a record asks for no edit at all, so it
    # is skipped rather than failing the whole file; its index is then absent from the indices.
    if isinstance(record.get("alt"), str) and not record["alt"].strip():
        return None
    return EditRequest(
        prompt=prompt,
        target_new=_text(record, "alt"),
        # zsRE questions were written by people, so the subject label need not occur verbatim
        # (all 1000 shipped records contain it, but nothing guarantees that for other zsRE
        # files). An absent subject becomes None, so locate-then-edit editors key on the last
        # prompt token instead of the whole file being refused.
        subject=subject if subject in prompt else None,
        target_true=answers[0],
        rephrase_prompts=(rephrase,),
        locality=locality,
        metadata={**metadata, "answers": tuple(answers)},
    )


def medcf_request(record: Mapping[str, Any], metadata: Mapping[str, Any]) -> EditRequest:
    """MedCF and MedCF++: four named locality groups (td, em, ss, ts), one probe each."""
    return EditRequest(
        **_counterfact_fields(record),
        locality={
            group: (_probe(record, f"locality_{infix}_prompt", f"locality_{infix}_ground_truth"),)
            for group, infix in MEDCF_LOCALITY_GROUPS
        },
        metadata=dict(metadata),
    )


def medversa_request(record: Mapping[str, Any], metadata: Mapping[str, Any]) -> EditRequest:
    """MedVersa: `subject_name` is a medical field, not a span of the prompt, so subject is None."""
    return EditRequest(
        prompt=_text(record, "prompt"),
        target_new=_text(record, "target_new"),
        subject=None,
        target_true=_text(record, "ground_truth"),
        rephrase_prompts=(_text(record, "rephrase_prompt"),),
        locality={"default": (_probe(record, "locality_prompt", "locality_ground_truth"),)},
        metadata={
            **metadata,
            "subject_name": _text(record, "subject_name"),
            "topic_name": _text(record, "topic_name"),
            "id": _integer(record, "id"),
        },
    )


# Format name -> (a field only records of that format carry, converter). The marker fields are
# disjoint across the published files, so the first record decides the format of a file.
FORMATS: Mapping[str, tuple[str, Converter]] = MappingProxyType({
    "counterfact": ("case_id", counterfact_request),
    "zsre": ("src", zsre_request),
    "medcf": ("locality_target_prompt", medcf_request),
    "medversa": ("subject_name", medversa_request),
})


# editscope's own layout (data/canonical.py) has no marker field: a record of none of the
# published formats that has its two required fields is read as canonical.
CANONICAL = "canonical"


def detect_format(record: Mapping[str, Any]) -> str:
    """Name of the format whose marker field the record carries, else "canonical" when it has
    'prompt' and 'target_new'; RecordProblem if neither."""
    for name, (marker, _) in FORMATS.items():
        if marker in record:
            return name
    if "prompt" in record and "target_new" in record:
        return CANONICAL
    markers = ", ".join(f"{marker!r} ({name})" for name, (marker, _) in FORMATS.items())
    raise RecordProblem(
        f"has none of the fields that identify a format ({markers}) nor the canonical 'prompt' and "
        "'target_new'; map its fields with --fields"
    )
