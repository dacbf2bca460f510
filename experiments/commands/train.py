"""`editscope train recipe|medrek`: train (or resume) a retrieval editor's network.

The training options live on the training script's command (`experiments.scripts.retrieval_train`);
this command forwards to it so there is one definition of them: `editscope train medrek --help`.
"""

from __future__ import annotations

import click

from experiments.scripts.retrieval_train import main as training_command

EDITORS = ("recipe", "medrek")


@click.command("train", context_settings={"ignore_unknown_options": True, "allow_extra_args": True,
                                          "help_option_names": []})
@click.argument("editor", required=False)
@click.pass_context
def train_command(ctx: click.Context, editor: str | None) -> None:
    """Train RECIPE or MEDREK; `editscope train medrek --help` lists the training options."""
    # Every option is forwarded, so `--help` before an editor name arrives here as the argument.
    if editor in (None, "--help", "-h"):
        click.echo(ctx.get_help())
        ctx.exit(0)
    if editor not in EDITORS:
        raise click.UsageError(f"Unknown editor {editor!r} to train; choose {' or '.join(EDITORS)}.")
    training_command.main(args=["--editor", editor, *ctx.args], prog_name="editscope train",
                          standalone_mode=True)
