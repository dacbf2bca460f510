"""The CLI group imports a command's module only when that command is used, and still lists
every command with its short help."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from cli import COMMANDS, main
from experiments.commands.lazy_group import LazyGroup

REPO = Path(__file__).resolve().parent.parent


def imported_command_modules(code: str) -> list[str]:
    """Command modules imported after running `code` in a fresh interpreter."""
    probe = (f"import sys; {code}; "
             "print(sorted(m for m in sys.modules if m.startswith('experiments.commands.')))")
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    return eval(result.stdout.strip().splitlines()[-1])


def test_importing_the_cli_imports_no_command():
    assert imported_command_modules("import cli") == ["experiments.commands.lazy_group"]


def test_running_a_command_imports_only_its_own_module_and_what_it_needs():
    code = ("from click.testing import CliRunner; from cli import main; "
            "assert CliRunner().invoke(main, ['report', '--help']).exit_code == 0")
    modules = imported_command_modules(code)
    assert "experiments.commands.report" in modules
    assert not {"experiments.commands.akd", "experiments.commands.train",
                "experiments.commands.covariance"} & set(modules)


def test_group_help_lists_every_command_with_its_short_help():
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0, result.output
    listed = result.output.split("Commands:")[1].splitlines()
    names = [line.split()[0] for line in listed if line.strip()]
    assert names == sorted(COMMANDS)
    assert all(len(line.split()) > 1 for line in listed if line.strip())  # a short help each


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_shows_its_help(name):
    result = CliRunner().invoke(main, [name, "--help"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("Usage:")


def test_train_shows_the_training_options():
    result = CliRunner().invoke(main, ["train", "medrek", "--help"])
    assert result.exit_code == 0, result.output
    assert "--steps" in result.output


def test_train_refuses_an_unknown_editor():
    result = CliRunner().invoke(main, ["train", "memit", "--steps", "1"])
    assert result.exit_code == 2 and "'memit' is not one of 'medrek', 'medrek_copy', 'recipe'" in result.output


def test_unknown_command_is_a_usage_error():
    result = CliRunner().invoke(main, ["nope"])
    assert result.exit_code == 2 and "No such command 'nope'" in result.output


def test_a_wrong_table_entry_names_itself():
    group = LazyGroup(name="probe", lazy_commands={"report": "experiments.commands.report:absent",
                                                   "fail": "experiments.commands.report:fail",
                                                   "other": "experiments.commands.report:report_command"})
    with click.Context(group) as ctx:
        for name in ("report", "fail", "other"):
            with pytest.raises(RuntimeError, match=f"is not the Click command '{name}'"):
                group.get_command(ctx, name)
