"""editscope command line: `python cli.py --help` (or the installed `editscope` script)."""

from __future__ import annotations

import click

from experiments.commands.covariance import covariance_command


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="editscope", message="editscope %(version)s")
def main() -> None:
    """Compare locate-then-edit and retrieval knowledge editors on identical edits."""


main.add_command(covariance_command)

if __name__ == "__main__":
    main()
