"""editscope command line: `python cli.py --help` (or the installed `editscope` script)."""

from __future__ import annotations

import click

from experiments.commands.akd import akd_command
from experiments.commands.bench import bench_command
from experiments.commands.compare import compare_command
from experiments.commands.covariance import covariance_command
from experiments.commands.edit import edit_command
from experiments.commands.report import report_command
from experiments.commands.stress import stress_command
from experiments.commands.train import train_command


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="editscope", message="editscope %(version)s")
def main() -> None:
    """Compare locate-then-edit and retrieval knowledge editors on identical edits."""


for command in (compare_command, stress_command, akd_command, bench_command, covariance_command,
                edit_command, train_command, report_command):
    main.add_command(command)

if __name__ == "__main__":
    main()
