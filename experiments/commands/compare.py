"""`editscope compare`: every editor on the same batch of edits, one table, one report."""

from __future__ import annotations

import click

from covariance.distributed import Rank
from experiments.commands.common import (
    field_map_option, hparams_option, hparams_request, max_target_tokens_option, model_option, output_options,
    publish, requested_editors,
    seed_option, workers_option,
)
from experiments.commands.sweep import line_up, run_jobs
from experiments.commands.sweep_options import chosen_seeds, seeds_option, worker_plan
from experiments.console import console, fail
from experiments.edit_sets import cut_long_targets, draw_edits
from experiments.records import Settings
from experiments.workers import Job
from experiments.tables import comparison_table
from lm.loading import load

BENCHMARK_HELP = ("medcfpp, medcf, medversa, counterfact, zsre, or a path to a JSON/JSONL file in one of their "
                  "formats, the canonical one, or any layout read through --fields.")


@click.command("compare")
@click.option("--editors", "editor_list", default="all", show_default=True,
              help="'all' or a comma-separated list, e.g. memit,medrek.")
@click.option("--benchmark", default="medcfpp", show_default=True, help=BENCHMARK_HELP)
@click.option("--split", default=None, help="Split of a shipped benchmark (default: its test split).")
@field_map_option
@max_target_tokens_option
@click.option("--batch", "batch_size", type=int, default=100, show_default=True, help="Edits applied together.")
@click.option("--fluency-prompts", type=click.IntRange(min=0), default=Settings.fluency_prompts, show_default=True,
              help="Edit prompts continued for fluency: the run's first N (0: off).")
@click.option("--fluency-tokens", type=click.IntRange(min=1), default=Settings.fluency_new_tokens,
              show_default=True, help="New tokens per fluency continuation (sampled top-5, exactly this many).")
@click.option("--perplexity-tokens", type=click.IntRange(min=0), default=Settings.perplexity_tokens,
              show_default=True, help="Held-out WikiText-2 target tokens for perplexity, each piece after its 16 preceding words (0: off).")
@hparams_option
@model_option
@seed_option
@seeds_option
@workers_option
@output_options
def compare_command(editor_list, benchmark, split, fields, max_target_tokens, batch_size, fluency_prompts, fluency_tokens,
                    perplexity_tokens, hparams_files, model_name, seed, seeds_text, workers, quiet, as_json,
                    reports_dir):
    """Run every editor on the same batch of edits and compare them in one table and report
    (with --seeds, on one batch per seed, and the spread across seeds)."""
    if batch_size <= 0:
        fail(f"--batch must be a positive number of edits, not {batch_size}.")
    names = requested_editors(editor_list)
    out = console(quiet or as_json)
    settings = Settings(fluency_prompts=fluency_prompts, fluency_new_tokens=fluency_tokens,
                        perplexity_tokens=perplexity_tokens)
    seeds = chosen_seeds(seed, seeds_text)
    drawn = [draw_edits(benchmark, batch_size, each, split, fields, asked_by=f"--batch {batch_size}") for each in seeds]
    hparams = hparams_request(hparams_files, drawn[0].dataset.benchmark, names)
    model, tok = load(model_name)
    drawn = [cut_long_targets(edits, tok, max_target_tokens) for edits in drawn]
    lineup = line_up(names, model, out, hparams=hparams)
    jobs = [Job(name, edits, batch_size) for edits in drawn for name in lineup]
    records = run_jobs(jobs, lineup, model, tok, settings, Rank(), out,
                       plan=worker_plan(workers, len(jobs), model_name, settings, hparams=hparams))
    for edits in drawn:
        out.print(comparison_table([r for r in records if r.seed == edits.seed],
                                   f"{len(edits.requests)} edits from {edits.dataset.benchmark} "
                                   f"({edits.dataset.split or 'file'}), batch {batch_size}, seed {edits.seed}"))
    arguments = dict(editors=editor_list, benchmark=benchmark, split=split, batch=batch_size, model=model_name,
                     fields=fields and fields.spec, max_target_tokens=max_target_tokens,
                     seed=seed, fluency_prompts=fluency_prompts, fluency_tokens=fluency_tokens,
                     perplexity_tokens=perplexity_tokens, hparams=[str(file.path) for file in hparams_files],
                     **({"seeds": list(seeds)} if seeds_text else {}))
    publish("compare", arguments, records, out, reports_dir, as_json)
