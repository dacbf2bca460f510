"""A MedFE/MedLaSA-style long-form file (explanations as targets, no old target, named locality
fields) read through --fields and compared end to end on the embedded model."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from cli import main
from experiments.commands import compare

EXPLANATIONS = (
    "Metformin is the first choice because it lowers glucose output by the liver without causing "
    "weight gain. It should be taken with meals, and kidney function must be checked every year.",
    "Amoxicillin is preferred for most children with an ear infection because it is cheap, safe and "
    "covers the usual bacteria. A ten day course is given when the child is younger than two.",
    "Salbutamol relaxes the muscles around the airways within minutes, so it is used for sudden "
    "asthma symptoms. Patients who need it more than twice a week should review their treatment.",
)
SUBJECTS = ("type 2 diabetes", "acute otitis media", "an asthma attack")


def medfe_records() -> list[dict]:
    return [{
        "subject": subject,
        "prompt": f"What is the first-line drug treatment for {subject}?",
        "target_new": explanation,
        "rephrase_prompt": f"Which medicine should be tried first for {subject}?",
        "locality_topic_prompt": "What vitamin deficiency causes scurvy?",
        "locality_topic_ground_truth": "A lack of vitamin C causes scurvy.",
        "locality_tokenSem_prompt": "The capital city of France is",
        "locality_tokenSem_ground_truth": "Paris, on the river Seine.",
    } for subject, explanation in zip(SUBJECTS, EXPLANATIONS)]


FIELDS = ("rephrase_prompts=rephrase_prompt,"
          "locality.topic=locality_topic_prompt:locality_topic_ground_truth,"
          "locality.tokenSem=locality_tokenSem_prompt:locality_tokenSem_ground_truth")
MAX_TOKENS = 24


@pytest.mark.slow
def test_compare_scores_a_long_form_file_through_a_field_map(tmp_path, monkeypatch, default_model):
    monkeypatch.setattr(compare, "load", lambda name: default_model)  # (model, tokenizer), loaded once
    path = tmp_path / "medfe.json"
    path.write_text(json.dumps(medfe_records()))
    reports = tmp_path / "reports"
    result = CliRunner().invoke(main, [
        "compare", "--benchmark", str(path), "--fields", FIELDS, "--editors", "memit,medrek", "--batch", "1",
        "--max-target-tokens", str(MAX_TOKENS), "--fluency-prompts", "0", "--perplexity-tokens", "0",
        "--workers", "1", "--json", "--reports-dir", str(reports)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    runs = {run["editor"]: run for run in report["runs"]}
    assert set(runs) == {"unedited", "memit", "medrek"}
    dataset = runs["memit"]["dataset"]
    # Every explanation is longer than the cut: the drawn target was cut, and it has no old target.
    assert dataset["benchmark"] == "medfe" and dataset["max_target_tokens"] == MAX_TOKENS
    assert dataset["targets_cut"] == 1 and dataset["without_target_true"] == 1
    for run in runs.values():
        assert run["aggregate"]["efficacy_score"] is None  # needs an old target
        assert set(run["steps"][0]["requests"][0]["locality"]) == {"topic", "tokenSem"}
    # Teacher-forced accuracy over all tokens of the cut explanation: MEMIT writes most of it.
    # MedREK (trained on short targets) retrieves its entry for the edit prompt and its
    # rephrasing, and its prompt raises the accuracy, by less.
    unedited = runs["unedited"]["aggregate"]["efficacy_accuracy"]
    assert runs["memit"]["aggregate"]["efficacy_accuracy"] > unedited + 0.1  # measured: 0.54 vs 0.29
    assert runs["medrek"]["aggregate"]["health"]["retrieval"]["correct"] == 1.0
    assert runs["medrek"]["aggregate"]["efficacy_accuracy"] > unedited
    markdown = next(reports.iterdir()).joinpath("report.md").read_text()
    assert f"1 target(s) and 0 locality answer(s) cut to {MAX_TOKENS} tokens" in markdown
    assert "1 request(s) without an old target: their scores (Eff/Gen score, NS) are absent" in markdown


def test_a_record_missing_a_mapped_field_exits_2_naming_it(tmp_path):
    records = medfe_records()
    del records[2]["locality_tokenSem_prompt"]
    path = tmp_path / "medfe.json"
    path.write_text(json.dumps(records))
    reports = tmp_path / "reports"
    result = CliRunner().invoke(main, ["compare", "--benchmark", str(path), "--fields", FIELDS,
                                       "--reports-dir", str(reports)])
    assert result.exit_code == 2
    assert (f"Record 2 of {path} is missing field 'locality_tokenSem_prompt' (mapped to locality.tokenSem)."
            in " ".join(result.output.split()))
    assert not reports.exists()
