"""The canonical edit-set format: every shipped benchmark converts to it and back unchanged,
field maps read other layouts, and bad files or maps are refused with one sentence."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from cli import main
from data.benchmarks import BENCHMARKS, BenchmarkError, load_benchmark
from data.canonical import FIELDS, SCHEMA_FILE, canonical_record, write_edit_set
from data.field_maps import FieldMapError, parse_field_map

SCORED = ("prompt", "target_new", "subject", "target_true", "rephrase_prompts", "locality")


def scored_view(request) -> tuple:
    """Everything scoring and editing read from a request, plus its position in the shipped file
    (a converted record keeps it under metadata["source"]; zsRE skips two records, so the
    converted file's own positions differ)."""
    index = request.metadata.get("source", request.metadata)["index"]
    return (*(getattr(request, name) for name in SCORED), index)


@pytest.mark.parametrize("name, split", [(name, split) for name, b in BENCHMARKS.items() for split in b.splits])
def test_every_shipped_split_converts_to_canonical_and_back_unchanged(name, split, tmp_path):
    every = load_benchmark(name, split)
    # A spread of at most ~1000 records per split keeps this fast; every record's fields go
    # through the same converter (tests/test_data_loaders.py loads every record).
    original = every[:: max(1, len(every) // 1000)]
    # JSON for one half of the splits, gzip-compressed JSONL for the other: both are read back.
    path = tmp_path / (f"{name}-{split}.json" if len(split) % 2 else f"{name}-{split}.jsonl.gz")
    write_edit_set(original, path)
    again = load_benchmark(str(path))
    assert [scored_view(r) for r in again] == [scored_view(r) for r in original]
    # The source is kept, and converting the converted file changes nothing.
    assert again[0].metadata["source"] == {"benchmark": name, "split": split, "index": original[0].metadata["index"]}
    assert [canonical_record(r) for r in again] == [canonical_record(r) for r in original]


def test_the_convert_command_writes_what_the_schema_describes(tmp_path):
    target = tmp_path / "medcfpp.jsonl"
    result = CliRunner().invoke(main, ["convert", "medcfpp", str(target), "--split", "train"])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in target.read_text().splitlines()]
    assert len(records) == len(load_benchmark("medcfpp", "train"))
    schema = json.loads(SCHEMA_FILE.read_text())
    record_schema = schema["$defs"]["record"]
    assert set(record_schema["properties"]) == set(FIELDS) and record_schema["required"] == ["prompt", "target_new"]
    assert all(set(record) <= set(FIELDS) and {"prompt", "target_new"} <= set(record) for record in records)
    assert set(records[0]["locality"]) == {"td", "em", "ss", "ts"}
    # An existing file is not overwritten without --force.
    again = CliRunner().invoke(main, ["convert", "medcfpp", str(target)])
    assert again.exit_code == 2 and "already exists" in again.output


MEDFE_RECORD = {
    "subject": "metformin",
    "prompt": "What is the first-line drug treatment for type 2 diabetes, metformin?",
    "target_new": "Metformin lowers hepatic glucose output. It is taken with meals to limit stomach upset.",
    "rephrase_prompt": "Which drug do guidelines recommend first for type 2 diabetes, metformin?",
    "locality_topic_prompt": "What causes scurvy?",
    "locality_topic_ground_truth": "A lack of vitamin C.",
    "locality_tokenSem_prompt": "What is the boiling point of water at sea level?",
    "locality_tokenSem_ground_truth": "100 degrees Celsius.",
}
MEDFE_FIELDS = ("rephrase_prompts=rephrase_prompt,"
                "locality.topic=locality_topic_prompt:locality_topic_ground_truth,"
                "locality.tokenSem=locality_tokenSem_prompt:locality_tokenSem_ground_truth")


def test_a_field_map_reads_another_layout_and_a_toml_map_reads_it_the_same(tmp_path):
    path = tmp_path / "medfe.json"
    path.write_text(json.dumps([MEDFE_RECORD]))
    with pytest.raises(BenchmarkError, match="field 'rephrase_prompt', which the canonical format does not"):
        load_benchmark(str(path))
    (request,) = load_benchmark(str(path), fields=parse_field_map(MEDFE_FIELDS))
    assert request.subject == "metformin" and request.target_true is None
    assert request.rephrase_prompts == (MEDFE_RECORD["rephrase_prompt"],)
    assert request.locality["tokenSem"][0].ground_truth == "100 degrees Celsius."
    assert request.metadata["benchmark"] == "medfe"
    toml = tmp_path / "medfe.toml"
    toml.write_text('rephrase_prompts = "rephrase_prompt"\n[locality]\n'
                    'topic = ["locality_topic_prompt", "locality_topic_ground_truth"]\n'
                    'tokenSem = ["locality_tokenSem_prompt", "locality_tokenSem_ground_truth"]\n')
    assert load_benchmark(str(path), fields=parse_field_map(str(toml))) == [request]


def test_a_record_missing_a_mapped_field_is_named(tmp_path):
    path = tmp_path / "medfe.jsonl"
    broken = {key: value for key, value in MEDFE_RECORD.items() if key != "locality_topic_ground_truth"}
    path.write_text(json.dumps(MEDFE_RECORD) + "\n" + json.dumps(broken) + "\n")
    with pytest.raises(BenchmarkError) as error:
        load_benchmark(str(path), fields=parse_field_map(MEDFE_FIELDS))
    assert str(error.value) == (f"Record 1 of {path} is missing field 'locality_topic_ground_truth' "
                                "(mapped to locality.topic).")


@pytest.mark.parametrize("spec, words", [
    ("target_new", "is not of the form"),
    ("answer=target_new", "'answer', which is not a canonical field"),
    ("locality.topic=just_a_prompt", "needs prompt_field:ground_truth_field"),
    ("missing.toml", "There is no field-map file"),
])
def test_bad_field_maps_are_refused_in_one_sentence(spec, words):
    with pytest.raises(FieldMapError, match=words):
        parse_field_map(spec)
