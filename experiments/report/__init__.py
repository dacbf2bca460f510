"""Report folders of CLI runs: `report.json` (the canonical record of a run) and the
Markdown, CSV and self-contained HTML rendered from it alone.

A command builds a `Report` (its run records plus command-specific `analyses`, see
`analyses`) and publishes it with `publish_report(report, "reports")`, which writes the
folder whole (report.json and everything rendered from it, or nothing); `render_all(run_dir)`
alone re-renders an existing folder. Owns: the report
document, its rendering, plots and the "Which method?" rules (`advice`). Must not touch:
models, editors or scoring — it reads numbers, it never measures them. Never prints.
"""

from experiments.report.advice import Thresholds
from experiments.report.analyses import (
    DISTINCT_SUBJECT, SAME_SUBJECT, akd_entries, correlation_entry,
)
from experiments.report.document import REPORT_FILE, Report, read_report
from experiments.report.errors import ReportError
from experiments.report.publish import publish_report
from experiments.report.render import RENDERED_FILES, render_all

__all__ = [
    "DISTINCT_SUBJECT", "RENDERED_FILES", "REPORT_FILE", "Report", "ReportError", "SAME_SUBJECT",
    "Thresholds", "akd_entries", "correlation_entry", "publish_report", "read_report", "render_all",
]
