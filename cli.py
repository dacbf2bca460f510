"""editscope command line: `python cli.py --help` (or the installed `editscope` script)."""

from __future__ import annotations

import click

from experiments.commands.lazy_group import LazyGroup

# Command name -> "module:attribute". Imported only when the command runs or lists its help,
# so a quick command (e.g. a covariance cache hit) does not pay for every other command's
# imports (scipy, transformers, the harness).
COMMANDS = {
    "akd": "experiments.commands.akd:akd_command",
    "ask": "experiments.commands.ask:ask_command",
    "bench": "experiments.commands.bench:bench_command",
    "compare": "experiments.commands.compare:compare_command",
    "convert": "experiments.commands.convert:convert_command",
    "covariance": "experiments.commands.covariance:covariance_command",
    "edit": "experiments.commands.edit:edit_command",
    "report": "experiments.commands.report:report_command",
    "stress": "experiments.commands.stress:stress_command",
    "train": "experiments.commands.train:train_command",
    "tune": "experiments.commands.tune:tune_command",
}


@click.group(cls=LazyGroup, lazy_commands=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="editscope", message="editscope %(version)s")
def main() -> None:
    """Compare locate-then-edit and retrieval knowledge editors on identical edits."""


if __name__ == "__main__":
    main()
