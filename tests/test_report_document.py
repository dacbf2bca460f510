"""report.json: round trip, where and how it is written, and one-sentence errors."""

from __future__ import annotations

import json
import math

import pytest
from test_report_fixtures import run, scenario

from experiments.report import RENDERED_FILES, Report, ReportError, akd_entries, publish_report, read_report


def test_report_round_trips_through_json():
    report = scenario()
    again = Report.from_json(report.to_json())
    assert again == report
    assert again.to_json() == report.to_json()
    data = json.loads(report.to_json())
    assert set(data) == {"format", "command", "arguments", "created", "runs", "analyses"}
    assert data["format"] == 1 and len(data["runs"]) == len(report.runs)
    assert data["runs"][0] == json.loads(report.runs[0].to_json())


def test_a_format_1_record_reads_as_what_it_measured():
    # Records written before format 2 lack the sampling and context settings: they were greedy
    # continuations and held-out pieces after one word, and read back as such, not as today's.
    settings = run("memit").settings
    assert (settings.fluency_top_k, settings.perplexity_context_words) == (0, 1)
    assert run("memit").aggregate.locality_score is None


def test_arguments_are_kept_as_json_values():
    report = Report("compare", {"sizes": (1, 10)}, (run("memit"),), created="2026-01-01T00:00:00+00:00")
    assert report.arguments == {"sizes": [1, 10]}  # as it will read back
    assert Report.from_json(report.to_json()) == report


def test_publish_report_names_a_new_folder_after_time_and_command(tmp_path):
    report = Report("stress same-subject", {}, (run("memit"),), created="2026-05-09T07:35:25+00:00")
    first = publish_report(report, tmp_path / "reports")
    second = publish_report(report, tmp_path / "reports")
    assert first.name == "20260509-073525-stress-same-subject"
    assert second.name == "20260509-073525-stress-same-subject-2"
    assert read_report(first) == report
    assert sorted(p.name for p in first.iterdir()) == sorted(["report.json", *RENDERED_FILES])
    assert sorted(p.name for p in (tmp_path / "reports").iterdir()) == [first.name, second.name]


def test_a_nan_is_refused_before_anything_is_written(tmp_path):
    with pytest.raises(ReportError, match="NaN"):
        Report("akd", {"rho": math.nan}, (run("memit"),))
    assert not (tmp_path / "reports").exists()


def test_akd_entries_write_nan_as_null():
    assert akd_entries(0, 1, {5: math.nan, 4: 2.5}) == [
        {"run_index": 0, "step": 1, "layer": 4, "akd": 2.5},
        {"run_index": 0, "step": 1, "layer": 5, "akd": None},
    ]


def test_a_missing_report_is_one_sentence(tmp_path):
    with pytest.raises(ReportError, match="No report.json in"):
        read_report(tmp_path)


@pytest.mark.parametrize("edit, message", [
    (lambda text: text[:-20], "not valid JSON"),
    (lambda text: "[1, 2]", "must hold a JSON object"),
    (lambda text: text.replace('"command"', '"commando"'), "lacks the field 'command'"),
    (lambda text: text.replace('"format": 1,\n  "runs"', '"format": 7,\n  "runs"'), "report format 7"),
    (lambda text: _edited(text, lambda d: d.update(runs=[])), "holds no runs"),
    (lambda text: _edited(text, lambda d: d["runs"][0].pop("editor")), "run 1 lacks the field 'editor'"),
    (lambda text: _edited(text, lambda d: d["analyses"].update(run_labels=["x"])), "one entry per run"),
    (lambda text: _edited(text, lambda d: d["analyses"]["akd"][0].update(step=9)), "has no step 9"),
    (lambda text: text.replace("12.5", "NaN"), "NaN"),
])
def test_malformed_reports_raise_report_error(tmp_path, edit, message):
    path = tmp_path / "report.json"
    path.write_text(edit(scenario().to_json()))
    with pytest.raises(ReportError, match=message) as raised:
        read_report(tmp_path)
    assert isinstance(raised.value, ValueError)  # the CLI's exit-code-2 family
    assert str(path) in str(raised.value)


def _edited(text: str, change) -> str:
    data = json.loads(text)
    change(data)
    return json.dumps(data)
