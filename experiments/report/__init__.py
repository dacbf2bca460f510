"""Report folders of CLI runs: `report.json` (the canonical record of a run) and the
Markdown, CSV and self-contained HTML rendered from it alone.

A command builds a `Report` (its run records plus command-specific `analyses`, see
`analyses`), writes it with `write_report(report, "reports")`, then calls
`render_all(run_dir)`; `render_all` alone re-renders an existing folder. Owns: the report
document, its rendering, plots and the "Which method?" rules (`advice`). Must not touch:
models, editors or scoring — it reads numbers, it never measures them. Never prints.
"""

from experiments.report.advice import Thresholds
from experiments.report.analyses import (
    DISTINCT_SUBJECT, SAME_SUBJECT, akd_entries, correlation_entry,
)
from experiments.report.document import REPORT_FILE, Report, read_report, write_report
from experiments.report.errors import ReportError
from experiments.report.render import RENDERED_FILES, render_all

__all__ = [
    "DISTINCT_SUBJECT", "RENDERED_FILES", "REPORT_FILE", "Report", "ReportError", "SAME_SUBJECT",
    "Thresholds", "akd_entries", "correlation_entry", "read_report", "render_all", "write_report",
]
