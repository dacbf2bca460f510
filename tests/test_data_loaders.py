"""Shipped benchmark and corpus files, the record-to-EditRequest mapping, and loader errors."""

from __future__ import annotations

import gzip
import json
import re

import pytest

from data.benchmarks import (
    BENCHMARKS, BenchmarkError, benchmark_names, load_benchmark, shipped_file,
)
from data.corpus import CorpusError, corpus_file_text, corpus_text
from data.requests import LocalityProbe

# Record counts per file, from the provenance table in BENCHMARKS.md.
PUBLISHED_COUNTS = {
    ("counterfact", "train"): 10000, ("counterfact", "test"): 10000,
    ("zsre", "train"): 1000,
    ("medcf", "train"): 2408, ("medcf", "valid"): 818, ("medcf", "test"): 802,
    ("medcfpp", "train"): 2247, ("medcfpp", "test"): 755,
    ("medversa", "train"): 3000, ("medversa", "valid"): 2000, ("medversa", "test"): 1000,
}

COUNTERFACT_RECORD = {
    "case_id": 7, "prompt": "The mother tongue of Ada is", "subject": "Ada",
    "target_new": "English", "ground_truth": "French", "rephrase_prompt": "Ada speaks",
    "locality_prompt": "Bo is a native speaker of", "locality_ground_truth": "French",
}


def write_json(path, value):
    path.write_text(json.dumps(value), encoding="utf-8")
    return path


def assert_one_sentence(message: str) -> None:
    assert message.endswith(".") and "\n" not in message
    assert not re.search(r"[.!?]\s+[A-Z]", message[:-1]), message


def test_every_split_is_shipped_with_its_published_record_count():
    assert {(name, split) for name in benchmark_names() for split in BENCHMARKS[name].splits} \
        == set(PUBLISHED_COUNTS)
    for (name, split), count in PUBLISHED_COUNTS.items():
        assert len(json.loads(gzip.decompress(shipped_file(name, split).read_bytes()))) == count


@pytest.mark.parametrize("name, split", sorted(PUBLISHED_COUNTS))
def test_every_record_of_a_split_loads_and_is_editable(name, split):
    requests = load_benchmark(name, split)
    # zsRE records 534 and 723 have an empty `alt` (no edit asked), so the loader skips them.
    skipped = {534, 723} if name == "zsre" else set()
    assert len(requests) == PUBLISHED_COUNTS[name, split] - len(skipped)
    assert not skipped & {request.metadata["index"] for request in requests}
    assert all(not request.problems() for request in requests)
    assert {(r.metadata["benchmark"], r.metadata["split"]) for r in requests} == {(name, split)}


def test_counterfact_fields_map_onto_the_request():
    request = load_benchmark("counterfact")[0]  # test is the default split
    assert request.prompt == "The mother tongue of Danielle Darrieux is"
    assert (request.subject, request.target_new, request.target_true) == \
        ("Danielle Darrieux", "English", "French")
    assert request.rephrase_prompts == (
        "Where Danielle Darrieux is from, people speak the language of",)
    assert request.locality == {
        "default": (LocalityProbe("Michel Rocard is a native speaker of", "French"),)}
    assert request.metadata == {"benchmark": "counterfact", "split": "test", "index": 0,
                                "case_id": 0}


def test_zsre_fields_map_onto_the_request():
    request = load_benchmark("zsre")[0]
    assert request.prompt == "What is the product made by UniFirst?"
    assert (request.subject, request.target_new, request.target_true) == \
        ("UniFirst", "unmanned aircraft", "uniform")
    assert request.rephrase_prompts == ("What will be the product of UniFirst?",)
    assert request.locality["default"][0].ground_truth == "Walter Sobchak"


def test_medcf_locality_probes_are_grouped_td_em_ss_ts():
    request = load_benchmark("medcfpp", "test")[0]
    assert request.subject == "Konjac mannan"
    assert list(request.locality) == ["td", "em", "ss", "ts"]
    assert request.locality["td"][0].prompt == \
        "Which drug is involved in a drug-drug interaction with Ritobegron?"
    assert request.locality["ts"][0] == LocalityProbe(
        "What drug does Cyclandelate resemble?", "Dexmethylphenidate")


def test_medversa_has_no_subject_span_and_keeps_its_labels():
    request = load_benchmark("medversa")[0]
    assert request.subject is None
    assert request.target_new == "Opiates" and request.target_true == "Alcohol"
    assert request.metadata["subject_name"] == "Forensic Medicine"
    assert request.metadata["topic_name"] == "Drug Abuse" and request.metadata["id"] == 15038


@pytest.mark.parametrize("compress", [False, True])
def test_a_local_file_is_loaded_in_its_detected_format(tmp_path, compress):
    payload = json.dumps([COUNTERFACT_RECORD]).encode()
    path = tmp_path / ("edits.json.gz" if compress else "edits.json")
    path.write_bytes(gzip.compress(payload) if compress else payload)
    [request] = load_benchmark(str(path))
    assert request.subject == "Ada" and request.target_true == "French"
    assert request.metadata == {"benchmark": "counterfact", "split": None, "index": 0,
                                "case_id": 7}


@pytest.mark.parametrize("content, expected", [
    ("{not json", "is not valid JSON"),
    ("[]", "empty list"),
    ('{"prompt": "x"}', "not a list of records"),
    ("[5]", "Record 0"),
    ('[{"prompt": "x"}]', "none of the fields that identify a format"),
])
def test_a_malformed_file_is_refused_in_one_sentence(tmp_path, content, expected):
    path = tmp_path / "broken.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(BenchmarkError) as caught:
        load_benchmark(str(path))
    message = str(caught.value)
    assert str(path) in message and expected in message
    assert_one_sentence(message)


@pytest.mark.parametrize("change, field, phrase", [
    (lambda record: record.pop("target_new"), "target_new", "is missing"),
    (lambda record: record.update(target_new="  "), "target_new", "empty"),
    (lambda record: record.update(case_id="7"), "case_id", "not an integer"),
    (lambda record: record.update(subject="Zed"), "subject", "does not occur"),
])
def test_a_bad_record_is_named_by_file_index_and_field(tmp_path, change, field, phrase):
    records = [dict(COUNTERFACT_RECORD, case_id=index) for index in range(5)]
    change(records[3])
    path = write_json(tmp_path / "edits.json", records)
    with pytest.raises(BenchmarkError) as caught:
        load_benchmark(str(path))
    message = str(caught.value)
    assert str(path) in message and "Record 3 " in message
    assert f"'{field}'" in message and phrase in message
    assert_one_sentence(message)


def test_unknown_names_and_splits_list_the_valid_ones(tmp_path):
    with pytest.raises(BenchmarkError, match="counterfact, zsre, medcf, medcfpp, medversa"):
        load_benchmark("counterfactual")
    with pytest.raises(BenchmarkError, match="its splits are train, valid, test"):
        load_benchmark("medcf", "dev")
    with pytest.raises(BenchmarkError, match="no benchmark file"):
        load_benchmark(str(tmp_path / "absent.json"))
    path = write_json(tmp_path / "edits.json", [COUNTERFACT_RECORD])
    with pytest.raises(BenchmarkError, match="applies to a named benchmark"):
        load_benchmark(str(path), "test")


def test_benchmark_descriptions_are_immutable():
    with pytest.raises(TypeError):
        BENCHMARKS["mine"] = BENCHMARKS["zsre"]  # type: ignore[index]


def test_shipped_corpora_are_the_wikitext2_splits():
    valid, test = corpus_text(), corpus_text("wikitext2-test")
    assert valid.split()[:3] == ["=", "Homarus", "gammarus"]
    assert len(valid.split()) == 213886 and len(test.split()) == 241211
    with pytest.raises(CorpusError, match="wikitext2-valid, wikitext2-test"):
        corpus_text("wikitext103")


def test_a_local_corpus_file_is_read_or_refused_clearly(tmp_path):
    text_file = tmp_path / "notes.txt"
    text_file.write_text("some held-out text\n", encoding="utf-8")
    assert corpus_file_text(text_file) == "some held-out text\n"
    with pytest.raises(CorpusError, match="no corpus file"):
        corpus_file_text(tmp_path / "absent.txt")
    (tmp_path / "blank.txt").write_text(" \n", encoding="utf-8")
    with pytest.raises(CorpusError, match="holds no text"):
        corpus_file_text(tmp_path / "blank.txt")
