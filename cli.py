"""editscope command line: `python cli.py --help` (or the installed `editscope` script)."""

from __future__ import annotations

import os

import click

from experiments.commands.lazy_group import LazyGroup
from experiments.console import exit_codes

# Command name -> "module:attribute". Imported only when the command runs or lists its help,
# so a quick command (e.g. a covariance cache hit) does not pay for every other command's
# imports (scipy, transformers, the harness).
COMMANDS = {
    "ablations": "experiments.commands.ablations:ablations_command",
    "akd": "experiments.commands.akd:akd_command",
    "ask": "experiments.commands.ask:ask_command",
    "bench": "experiments.commands.bench:bench_command",
    "compare": "experiments.commands.compare:compare_command",
    "convert": "experiments.commands.convert:convert_command",
    "covariance": "experiments.commands.covariance:covariance_command",
    "edit": "experiments.commands.edit:edit_command",
    "plan": "experiments.commands.plan:plan_command",
    "report": "experiments.commands.report:report_command",
    "stress": "experiments.commands.stress:stress_command",
    "train": "experiments.commands.train:train_command",
    "tune": "experiments.commands.tune:tune_command",
}


def _export_max_memory(_context, _parameter, value: str | None) -> str | None:
    """--max-memory becomes EDITSCOPE_MAX_MEMORY, so worker processes inherit the budget too."""
    if value is not None:
        from lm.memory import MAX_MEMORY_ENV, parse_size

        try:
            os.environ[MAX_MEMORY_ENV] = str(parse_size(value))
        except ValueError as error:
            raise click.BadParameter(str(error)) from None
    return value


def _export_load_dtype(_context, _parameter, value: str | None) -> str | None:
    """--load-dtype becomes EDITSCOPE_LOAD_DTYPE, so worker processes load models the same way."""
    if value is not None:
        from lm.loading import LOAD_DTYPE_ENV

        os.environ[LOAD_DTYPE_ENV] = value
    return value


# The names of lm.loading.LOAD_DTYPES, written out so that listing the commands does not import
# torch (tests/test_memory_plan.py checks that they agree).
LOAD_DTYPE_NAMES = ["float32", "bfloat16", "float16"]


class Commands(LazyGroup):
    """The command group; every command's failure ends as `exit_codes` says."""

    def invoke(self, ctx: click.Context):
        with exit_codes():
            return super().invoke(ctx)


@click.group(cls=Commands, lazy_commands=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="editscope", message="editscope %(version)s")
@click.option("--max-memory", default=None, expose_value=False, callback=_export_max_memory,
              help="Memory one process may hold at its peak (e.g. 24GB; RSS on a CPU, allocated memory on a GPU). "
                   "Memory-heavy steps size their batches to it. Default: a share of what is free.")
@click.option("--load-dtype", type=click.Choice(LOAD_DTYPE_NAMES), default=None,
              expose_value=False, callback=_export_load_dtype,
              help="Precision models are loaded in (default float32). bfloat16 halves the weights' memory "
                   "(e.g. an 8B model on a 24 GB GPU); edits and scores then round to it.")
def main() -> None:
    """Compare locate-then-edit and retrieval knowledge editors on identical edits."""


if __name__ == "__main__":
    main()
