"""`editscope report RUN_DIR`: re-render a report folder from its report.json alone."""

from __future__ import annotations

import click

from experiments.report import ReportError, render_all


@click.command("report")
@click.argument("run_dir", type=click.Path(file_okay=False))
def report_command(run_dir: str) -> None:
    """Regenerate report.md, results.csv and report.html from RUN_DIR/report.json."""
    try:
        written = render_all(run_dir)
    except OSError as error:  # a folder or disk that cannot take the rendered files
        raise ReportError(f"Cannot write the rendered files into {run_dir}: {error.strerror or error}.") from None
    for path in written:
        click.echo(str(path))
