"""report.md / results.csv / report.html: rendered from report.json alone, reproducibly."""

from __future__ import annotations

import csv
import io

import pytest
from test_report_fixtures import GROUPS, run, scenario

from experiments.report import RENDERED_FILES, Report, ReportError, publish_report, render_all


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """A scenario report folder, rendered once, with the bytes of its first rendering."""
    run_dir = publish_report(scenario(), tmp_path_factory.mktemp("reports"))
    return run_dir, {name: (run_dir / name).read_bytes() for name in RENDERED_FILES}


def test_rerendering_gives_identical_bytes(rendered):
    run_dir, first = rendered
    (run_dir / "report.md").unlink()
    render_all(run_dir)
    for name in ("report.md", "results.csv"):
        assert (run_dir / name).read_bytes() == first[name], name
    # PNGs carry no timestamp or software chunk, so the page is stable too (same matplotlib).
    assert (run_dir / "report.html").read_bytes() == first["report.html"]


def test_csv_has_one_row_per_run_or_sequential_step(rendered):
    run_dir, _ = rendered
    rows = list(csv.DictReader(io.StringIO((run_dir / "results.csv").read_text())))
    assert len(rows) == 7 + 3  # seven batch runs, and a sequential run with three steps
    assert [row["step"] for row in rows[-4:-1]] == ["1", "2", "3"]
    assert [row["edits"] for row in rows[-4:-1]] == ["5", "10", "15"]
    assert list(rows[0])[:12] == [
        "run", "editor", "label", "benchmark", "mode", "batch_size", "step", "seed", "edits",
        "eff_token_acc", "eff_token_acc_low", "eff_token_acc_high"]
    for column in [*(f"loc_{g}" for g in GROUPS), "loc_mean", "loc_ns", "fluency", "avg",
                   "ppl_change", "ppl_before", "ppl_after", "edit_seconds", "scoring_seconds",
                   "retrieval_unwanted", "avg_low", "loc_td_high", "eff_score", "gen_score"]:
        assert column in rows[0]
    assert rows[0]["eff_token_acc"] == "0.880000" and rows[0]["ceiling_efficacy"] == "0.900000"
    assert rows[0]["eff_token_acc_low"] == "0.850000" and rows[0]["eff_score_low"] == ""
    assert rows[2]["retrieval_correct"] == "0.800000" and rows[0]["retrieval_correct"] == ""


def test_markdown_names_both_conventions_and_the_ceiling(rendered):
    run_dir, _ = rendered
    text = (run_dir / "report.md").read_text()
    for header in ("| Eff acc | Eff score | Gen acc | Gen score |", "| TD | EM | SS | TS | Loc mean | NS |",
                   "PPL before → after", "ΔPPL %", "Edit s", "Scoring s", "mean per-token NLL"):
        assert header in text
    assert "88.0 ±3.0†" in text and "efficacy 90.0% (1 edits are unreachable" in text
    assert "fingerprint " + "f" * 64 in text and "sha256 " + "a" * 64 in text
    assert "| Version torch | 2.13.0 |" in text
    # The answer first: results, then advice; how the run was made comes last.
    sections = [part.split("\n")[0] for part in text.split("\n## ")[1:]]
    assert sections[:2] == ["Results", "Which method?"] and sections[-1] == "Run"


def test_html_is_self_contained_with_one_image_per_plot(rendered):
    run_dir, _ = rendered
    page = (run_dir / "report.html").read_text()
    assert "http://" not in page and "https://" not in page and "<script" not in page
    # All six plots apply: the trade-off, batch sizes, sequential steps, AKD, locality groups,
    # retrieval; the trade-off plot comes right after the results table.
    assert page.count('<img src="data:image/png;base64,') == 6
    assert page.index("Efficacy against locality") < page.index("Which method?")


def test_only_plots_with_data_are_drawn(tmp_path):
    # Two editors at one batch size, no retrieval, no AKD, no sequential run: the trade-off
    # and locality plots only.
    report = Report("compare", {}, (run("memit"), run("pmet")), created="2026-01-01T00:00:00+00:00")
    run_dir = publish_report(report, tmp_path)
    page = (run_dir / "report.html").read_text()
    assert page.count('<img src="data:image/png;base64,') == 2
    assert "Locality sub-metrics per run" in page and "Retrieval diagnostics" not in page


def test_render_without_report_json_raises_and_writes_nothing(tmp_path):
    with pytest.raises(ReportError, match="No report.json"):
        render_all(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_render_of_a_malformed_report_writes_nothing(tmp_path):
    (tmp_path / "report.json").write_text('{"format": 1}')
    with pytest.raises(ReportError, match="lacks the field 'command'"):
        render_all(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]
