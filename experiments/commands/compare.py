"""`editscope compare`: every editor on the same batch of edits, one table, one report."""

from __future__ import annotations

from typing import Sequence

import click
from rich.table import Table

from experiments.commands.common import model_option, output_options, publish, seed_option, usage_errors
from experiments.console import console, fail, progress_bar
from experiments.discovery import REGISTRIES, build_editor, discover_editors
from experiments.edit_sets import draw_edits
from experiments.harness import run_batch
from experiments.identity import IdentityEditor
from experiments.records import RunRecord, Settings
from experiments.tables import GROUP_LABELS
from lm.loading import load

BENCHMARK_HELP = "medcfpp, medcf, medversa, counterfact, zsre, or a path to a JSON file in one of their formats."


def known_editor_names() -> tuple[str, ...]:
    return (IdentityEditor.name, *dict.fromkeys(n for names in REGISTRIES.values() for n in names))


def requested_editors(text: str) -> tuple[str, ...] | None:
    """None for "all"; otherwise the validated names in the order given."""
    if text.strip().lower() == "all":
        return None
    names = tuple(dict.fromkeys(part.strip().lower() for part in text.split(",") if part.strip()))
    unknown = [name for name in names if name not in known_editor_names()]
    if unknown or not names:
        fail(f"Unknown editor {', '.join(unknown) or repr(text)}; choose from all, {', '.join(known_editor_names())}.")
    return names


def line_up(names: tuple[str, ...] | None, model, tok, out):
    """The editors to run, the unedited reference always first."""
    if names is None:
        lineup = discover_editors(model, tok)
        for name, why in lineup.unavailable.items():
            out.print(f"[yellow]skipped {name}[/yellow]: {why}")
        return list(lineup.editors)
    editors = [IdentityEditor()]
    editors += [build_editor(name, model, tok) for name in names if name != IdentityEditor.name]
    return editors


def compare_table(records: Sequence[RunRecord], title: str) -> Table:
    """Eff/Gen (token accuracy), locality per group, Flu, Avg, perplexity change, edit time and
    inference overhead (scoring time relative to the unedited run on the same prompts)."""
    groups = list(dict.fromkeys(g for r in records for g in r.aggregate.locality))
    reference = next((r for r in records if r.editor == IdentityEditor.name), None)
    table = Table(title=title)
    table.add_column("Editor", no_wrap=True)
    for column in ("Eff", "Gen", *(GROUP_LABELS.get(g, g.upper()) for g in groups), "Flu", "Avg",
                   "ΔPPL", "Edit s", "Infer ×"):
        table.add_column(column, justify="right")
    for record in records:
        result = record.aggregate
        ppl_after = result.health.perplexity_after
        delta = None if ppl_after is None or record.perplexity_before is None else ppl_after - record.perplexity_before
        overhead = None
        if reference is not None:
            base = sum(s.scoring_seconds for s in reference.timings.steps)
            overhead = sum(s.scoring_seconds for s in record.timings.steps) / base if base else None
        table.add_row(
            record.editor,
            _percent(result.efficacy_accuracy),
            _percent(result.generality_accuracy),
            *(_percent(result.locality.get(g)) for g in groups),
            _number(result.health.fluency, 1),
            _percent(result.average),
            _number(delta, 2, signed=True),
            _number(record.timings.edit_seconds, 1),
            _number(overhead, 2),
        )
    return table


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def _number(value: float | None, decimals: int, signed: bool = False) -> str:
    if value is None:
        return "–"
    return f"{value:+.{decimals}f}" if signed else f"{value:.{decimals}f}"


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
        editors = line_up(names, model, tok, out)
        records = []
        for editor in editors:
            with progress_bar(out, f"{editor.name}", "batch") as update:
                records.append(run_batch(editor, model, tok, edits, batch_size, settings, progress=update))
    out.print(compare_table(records, f"{len(edits.requests)} edits from {edits.dataset.benchmark} "
                                     f"({edits.dataset.split or 'file'}), batch {batch_size}, seed {seed}"))
    arguments = dict(editors=editor_list, benchmark=benchmark, split=split, batch=batch_size, model=model_name,
                     seed=seed, fluency_prompts=fluency_prompts, fluency_tokens=fluency_tokens,
                     perplexity_tokens=perplexity_tokens)
    publish("compare", arguments, records, out, reports_dir, as_json)
