"""`editscope report RUN_DIR`: re-render a report folder from its report.json alone."""

from __future__ import annotations

import click

from experiments.report import render_all


@click.command("report")
@click.argument("run_dir", type=click.Path(file_okay=False))
def report_command(run_dir: str) -> None:
    """Regenerate report.md, results.csv and report.html from RUN_DIR/report.json."""
    for path in render_all(run_dir):
        click.echo(str(path))
