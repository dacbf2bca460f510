"""`editscope report RUN_DIR`: re-render a report folder from its report.json alone."""

from __future__ import annotations

import click

from experiments.console import fail
from experiments.report import ReportError, render_all


@click.command("report")
@click.argument("run_dir", type=click.Path(file_okay=False))
def report_command(run_dir: str) -> None:
    """Regenerate report.md, results.csv and report.html from RUN_DIR/report.json."""
    try:
        written = render_all(run_dir)
    except ReportError as error:
        fail(str(error))
    for path in written:
        click.echo(str(path))
