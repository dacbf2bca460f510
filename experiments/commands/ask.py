"""`editscope ask`: put questions to an edited model and see its answers beside the unedited one's."""

from __future__ import annotations

import json

import click
from rich.table import Table

from data.benchmarks import load_benchmark
from experiments.answers import Answer, answer
from experiments.commands.common import field_map_option
from experiments.console import console, fail
from experiments.saved_edits import edit_in_memory, open_saved_edits
from lm.loading import load


@click.command("ask")
@click.option("--edits", "edits_dir", type=click.Path(file_okay=False),
              help="A folder written by `edit --save`: an edited model or a retrieval editor's memory.")
@click.option("--editor", "editor_name", default=None,
              help="With --requests: edit in memory with this editor. With --edits: the editor of a "
                   "memory saved without its manifest.")
@click.option("--requests", "requests_file", type=click.Path(dir_okay=False),
              help="Edits to apply in memory (any format `edit --requests` reads).")
@field_map_option
@click.option("--model", "model_name", default=None,
              help="The unedited model: 'default' (embedded SmolLM2-135M), an HF id or a folder "
                   "(default: the one the saved edits were made on, else 'default').")
@click.option("--prompt", "prompts", multiple=True, help="A question (repeatable); none: ask interactively.")
@click.option("--target", default=None, help="Report P(target) for this text (default: the new target of "
                                               "the edit the prompt reaches).")
@click.option("--max-new-tokens", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--samples", type=click.IntRange(min=0), default=1, show_default=True,
              help="Sampled continuations per model, besides the greedy one.")
@click.option("--temperature", type=click.FloatRange(min=0, min_open=True), default=0.8, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the sampled continuations.")
@click.option("--json", "as_json", is_flag=True, help="Print the answers as JSON (one object per prompt, in a list).")
def ask_command(edits_dir, editor_name, requests_file, fields, model_name, prompts, target, max_new_tokens,
                samples, temperature, seed, as_json):
    """Answer questions with the unedited and the edited model side by side: greedy and sampled
    continuations, the edit the question reaches (retrieved, for retrieval editors) and the new
    target's probability before and after."""
    if (edits_dir is None) == (requests_file is None):
        fail("Give either --edits DIR (saved by `edit --save`) or --editor NAME with --requests FILE.")
    if requests_file is not None and editor_name is None:
        fail("--requests needs --editor to say which editor applies them.")
    if not prompts and as_json:
        fail("--json needs at least one --prompt (interactive questions are not printed as JSON).")
    out = console(as_json)
    if edits_dir is not None:
        with out.status("Loading the model and the saved edits"):
            edited = open_saved_edits(edits_dir, model_name, editor_name)
    else:
        requests = load_benchmark(requests_file, fields=fields)
        with out.status(f"Loading the model and applying {len(requests)} edit(s) with {editor_name}"):
            model, tok = load(model_name or "default")
            edited = edit_in_memory(model, tok, editor_name, requests)

    def ask(prompt: str) -> Answer:
        return answer(edited, prompt, max_new_tokens, samples, temperature, seed, target)

    if prompts:
        answers = [ask(prompt) for prompt in prompts]
        if as_json:
            click.echo(json.dumps([found.to_dict() for found in answers], indent=2, ensure_ascii=False))
        for found in answers:
            out.print(answer_table(found, edited.editor))
        return
    while True:
        prompt = click.prompt("Question (empty to stop)", default="", show_default=False)
        if not prompt.strip():
            return
        out.print(answer_table(ask(prompt), edited.editor))


def answer_table(found: Answer, editor: str) -> Table:
    """The two models' answers in two columns, the edit the prompt reached in the caption."""
    if found.edit is None:
        caption = "No edit is about this prompt."
    else:
        caption = f"Edit reached: {found.edit['prompt']!r} → {found.edit['target_new']!r}"
    table = Table(title=found.prompt, caption=caption, show_lines=True)
    table.add_column("")
    table.add_column("unedited", overflow="fold")
    table.add_column(f"edited ({editor})", overflow="fold")
    table.add_row("greedy", found.unedited.greedy, found.edited.greedy)
    for number, (before, after) in enumerate(zip(found.unedited.sampled, found.edited.sampled), start=1):
        table.add_row(f"sample {number}", before, after)
    if found.target is not None:
        table.add_row(f"P({_short(found.target)})", f"{found.unedited.target_probability:.3g}",
                      f"{found.edited.target_probability:.3g}")
    return table


def _short(text: str, limit: int = 30) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
