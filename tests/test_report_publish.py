"""Report folders are published whole; a failure at publish time keeps the records."""

from __future__ import annotations

import errno

import pytest
from test_report_fixtures import run

from experiments.report import Report, ReportError, publish_report, read_report
from experiments.report import publish

REPORT = Report("compare", {}, (run("memit"),), created="2026-05-09T07:35:25+00:00")


@pytest.mark.parametrize("interruption", [KeyboardInterrupt, RuntimeError])
def test_an_interrupted_publish_leaves_no_folder(tmp_path, monkeypatch, interruption):
    def half_rendered(folder):
        (folder / "report.md").write_text("half")
        raise interruption()

    monkeypatch.setattr(publish, "render_all", half_rendered)
    with pytest.raises(interruption):
        publish_report(REPORT, tmp_path / "reports")
    assert list((tmp_path / "reports").iterdir()) == []


def test_a_failed_publish_saves_the_records_elsewhere_and_says_where(tmp_path, monkeypatch, tmp_cache):
    def disk_full(folder):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(publish, "render_all", disk_full)
    with pytest.raises(ReportError) as refused:
        publish_report(REPORT, tmp_path / "reports")
    message = str(refused.value)
    assert "No space left on device" in message
    (saved,) = (tmp_cache / publish.UNPUBLISHED_DIR).iterdir()
    assert f"editscope report {saved}" in message
    assert read_report(saved) == REPORT
    assert list((tmp_path / "reports").iterdir()) == []
