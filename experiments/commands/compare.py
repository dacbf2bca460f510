"""`editscope compare`: every editor on the same batch of edits, one table, one report."""

from __future__ import annotations

import click

from experiments.commands.common import model_option, output_options, publish, seed_option, usage_errors
from experiments.console import console, fail, progress_bar
from experiments.discovery import EDITOR_NAMES, build_editor, discover_editors
from experiments.edit_sets import draw_edits
from experiments.harness import run_batch
from experiments.identity import IdentityEditor
from experiments.records import Settings
from experiments.tables import comparison_table
from lm.loading import load

BENCHMARK_HELP = "medcfpp, medcf, medversa, counterfact, zsre, or a path to a JSON file in one of their formats."


def known_editor_names() -> tuple[str, ...]:
    return (IdentityEditor.name, *EDITOR_NAMES)


def requested_editors(text: str) -> tuple[str, ...] | None:
    """None for "all"; otherwise the validated names in the order given."""
    if text.strip().lower() == "all":
        return None
    names = tuple(dict.fromkeys(part.strip().lower() for part in text.split(",") if part.strip()))
    unknown = [name for name in names if name not in known_editor_names()]
    if unknown or not names:
        fail(f"Unknown editor {', '.join(unknown) or repr(text)}; choose from all, {', '.join(known_editor_names())}.")
    return names


def line_up(names: tuple[str, ...] | None, model, out):
    """The editors to run, the unedited reference always first."""
    if names is None:
        lineup = discover_editors(model)
        for name, why in lineup.unavailable.items():
            out.print(f"[yellow]skipped {name}[/yellow]: {why}")
        return list(lineup.editors)
    editors = [IdentityEditor()]
    editors += [build_editor(name, model) for name in names if name != IdentityEditor.name]
    return editors


@click.command("compare")
@click.option("--editors", "editor_list", default="all", show_default=True,
              help="'all' or a comma-separated list, e.g. memit,medrek.")
@click.option("--benchmark", default="medcfpp", show_default=True, help=BENCHMARK_HELP)
@click.option("--split", default=None, help="Split of a shipped benchmark (default: its test split).")
@click.option("--batch", "batch_size", type=int, default=100, show_default=True, help="Edits applied together.")
@click.option("--fluency-prompts", type=click.IntRange(min=0), default=Settings.fluency_prompts, show_default=True,
              help="Edit prompts continued for fluency (0: off).")
@click.option("--fluency-tokens", type=click.IntRange(min=1), default=Settings.fluency_new_tokens,
              show_default=True, help="New tokens per fluency continuation.")
@click.option("--perplexity-tokens", type=click.IntRange(min=0), default=Settings.perplexity_tokens,
              show_default=True, help="Held-out WikiText-2 tokens for perplexity (0: off).")
@model_option
@seed_option
@output_options
def compare_command(editor_list, benchmark, split, batch_size, fluency_prompts, fluency_tokens,
                    perplexity_tokens, model_name, seed, quiet, as_json, reports_dir):
    """Run every editor on the same batch of edits and compare them in one table and report."""
    if batch_size <= 0:
        fail(f"--batch must be a positive number of edits, not {batch_size}.")
    names = requested_editors(editor_list)
    out = console(quiet or as_json)
    with usage_errors():
        settings = Settings(fluency_prompts=fluency_prompts, fluency_new_tokens=fluency_tokens,
                            perplexity_tokens=perplexity_tokens)
        edits = draw_edits(benchmark, batch_size, seed, split)
        model, tok = load(model_name)
        editors = line_up(names, model, out)
        records = []
        for editor in editors:
            with progress_bar(out, f"{editor.name}", "batch") as update:
                records.append(run_batch(editor, model, tok, edits, batch_size, settings, progress=update))
    out.print(comparison_table(records, f"{len(edits.requests)} edits from {edits.dataset.benchmark} "
                                     f"({edits.dataset.split or 'file'}), batch {batch_size}, seed {seed}"))
    arguments = dict(editors=editor_list, benchmark=benchmark, split=split, batch=batch_size, model=model_name,
                     seed=seed, fluency_prompts=fluency_prompts, fluency_tokens=fluency_tokens,
                     perplexity_tokens=perplexity_tokens)
    publish("compare", arguments, records, out, reports_dir, as_json)
