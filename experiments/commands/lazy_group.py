"""A Click group that imports a command's module only when that command is needed.

Command modules pull in heavy libraries (scipy, transformers, the harness); importing all of
them made every invocation pay several seconds before doing anything. A `LazyGroup` knows each
command as "module:attribute" and imports it when it is run or its help is shown. Listing the
commands (`--help` of the group) imports them all, since the short help lives in each command.
"""

from __future__ import annotations

import importlib
from typing import Mapping

import click


class LazyGroup(click.Group):
    def __init__(self, *args, lazy_commands: Mapping[str, str], **kwargs):
        super().__init__(*args, **kwargs)
        self.lazy_commands = dict(lazy_commands)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy_commands})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in self.lazy_commands:
            return super().get_command(ctx, name)
        return self.import_command(name)

    def import_command(self, name: str) -> click.Command:
        module_name, attribute = self.lazy_commands[name].split(":")
        command = getattr(importlib.import_module(module_name), attribute, None)
        if not isinstance(command, click.Command) or command.name != name:
            # A programming error in the table, not a user error: say exactly what is wrong.
            raise RuntimeError(f"{self.lazy_commands[name]} is not the Click command {name!r}.")
        return command
