"""Render a report folder's Markdown, CSV and HTML from its report.json, and nothing else.

Everything is rendered in memory first and only then written (each file atomically), so a
malformed report.json raises ReportError with no file written or half-written.
"""

from __future__ import annotations

from pathlib import Path

from experiments.report.advice import Thresholds
from experiments.report.content import build_document
from experiments.report.document import read_report
from experiments.report.html_page import html_page
from experiments.report.markdown import markdown
from experiments.report.results_csv import results_csv
from lm.files import atomic_path

RENDERED_FILES = ("report.md", "results.csv", "report.html")


def render_all(run_dir: str | Path, thresholds: Thresholds = Thresholds()) -> tuple[Path, ...]:
    """(Re)write report.md, results.csv and report.html from `run_dir/report.json`; returns
    their paths. ReportError (one sentence) if report.json is missing or malformed."""
    run_dir = Path(run_dir)
    report = read_report(run_dir)
    document = build_document(report, thresholds)
    texts = dict(zip(RENDERED_FILES, (markdown(document), results_csv(report), html_page(document))))
    written = []
    for name, text in texts.items():
        with atomic_path(run_dir / name) as tmp:
            tmp.write_text(text, encoding="utf-8")
        written.append(run_dir / name)
    return tuple(written)
