"""`editscope tune EDITOR --benchmark B [--model M]`: choose a weight editor's hyper-parameters
for a model on a benchmark's **train** records and write them as a file `--hparams` accepts.

The search itself is `experiments.tuning` (one pass of coordinate search, each trial the
editor's own apply through the harness). Test records are never used: a test split is refused.
"""

from __future__ import annotations

import datetime
import math
from pathlib import Path

import click
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from data.benchmarks import BENCHMARKS
from experiments.commands.common import model_option, seed_option
from experiments.console import console, fail

DEFAULT_RECORDS = 20


@click.command("tune")
@click.argument("editor_name", metavar="EDITOR")
@click.option("--benchmark", required=True,
              help="medcfpp, medcf, medversa, counterfact, zsre, or a JSON file of train records in one of "
                   "their formats.")
@click.option("--split", default="train", show_default=True,
              help="Split of a shipped benchmark to tune on; never its test split.")
@click.option("--records", type=click.IntRange(min=2), default=DEFAULT_RECORDS, show_default=True,
              help="Train records drawn (seeded) and edited together in every trial.")
@click.option("--objective", type=click.Choice(["mean", "average", "efficacy", "locality"]), default="mean",
              show_default=True, help="What the search maximises: mean of efficacy, generality and locality; "
                                      "MedREK's Avg; efficacy; or locality.")
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="The hyper-parameter file to write (default: tuned/<editor>-<benchmark>.toml); finished "
                   "trials are kept beside it in <out>.trials.json, so a rerun continues.")
@click.option("--start", "start_file", default=None, metavar="FILE",
              help="Start the search from this hyper-parameter file instead of the shipped defaults (e.g. "
                   "for a model whose depth the defaults' layers do not fit).")
@model_option
@seed_option
@click.option("--quiet", is_flag=True, help="No progress bars or tables.")
def tune_command(editor_name, benchmark, split, records, objective, out_path, start_file, model_name, seed, quiet):
    """Tune a weight editor's hyper-parameters on a benchmark's train records and write them to a
    file that compare, stress, bench and edit take with --hparams FILE."""
    from editors.hparams import HparamsError, TunedOn
    from editors.hparams_files import hparams_file_text, locate_hparams_file, read_hparams_file, split_setting
    from editors.registry import EDITORS, choose_editor_hparams
    from experiments.edit_sets import draw_edits
    from experiments.tuning import OBJECTIVES, TrialLog, TuningSetup, coordinate_search, planned_trials
    from lm.adapters import adapter_for
    from lm.files import atomic_path
    from lm.loading import load, model_fingerprint

    editor = editor_name.strip().lower().replace("-", "_")
    if editor not in EDITORS:
        fail(f"tune works on the weight editors ({', '.join(EDITORS)}), not {editor_name!r}; the retrieval "
             "editors are trained with `editscope train`.")
    if split_setting(editor)[1] is not None:
        fail(f"tune takes an editor, not a named setting ({editor_name}).")
    shipped = benchmark in BENCHMARKS
    if shipped and split == "test":
        fail("tune never uses test records; tune on --split train (test records are for measuring).")
    if shipped and split not in BENCHMARKS[benchmark].splits:
        fail(f"{benchmark} has no {split!r} split (its splits: {', '.join(BENCHMARKS[benchmark].splits)}).")
    out_path = out_path or Path("tuned") / f"{editor}-{Path(benchmark).stem if not shipped else benchmark}.toml"
    trials_path = out_path.with_name(out_path.name + ".trials.json")
    out = console(quiet)
    start_values = read_hparams_file(locate_hparams_file(start_file)) if start_file else None
    if start_values is not None and start_values.editor != editor:
        raise HparamsError(f"{start_values.path} holds hyper-parameters for {start_values.editor}, not {editor}.")
    edits = draw_edits(benchmark, records, seed, split if shipped else None)
    model, tok = load(model_name)
    start = choose_editor_hparams(editor, model, benchmark=edits.dataset.benchmark, hparams_file=start_values)
    axes = start.hparams.tuning_axes(adapter_for(model).num_layers(model))
    fingerprint = model_fingerprint(model)
    setup = TuningSetup(editor, fingerprint, edits.dataset.benchmark, edits.dataset.split, records, seed,
                        edits.record_indices, start.hparams.to_dict())
    log = TrialLog(trials_path, setup)
    out.print(escape(f"Tuning {editor} on {records} {edits.dataset.benchmark} {edits.dataset.split or 'file'} records "
              f"(seed {seed}), objective: {OBJECTIVES[objective][0]}; starting from {', '.join(start.sources)}."))

    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[state]}"), TimeElapsedColumn())
    with Progress(*columns, console=out, disable=out.quiet, transient=False) as bar:
        trials_task = bar.add_task(f"tune {editor}", total=planned_trials(axes), state="")
        stage_task = bar.add_task("  trial", total=None, state="")

        def on_trial(number, settings, reused) -> None:
            bar.update(trials_task, completed=number - 1, state=_describe(settings, start.hparams))
            bar.update(stage_task, completed=0, total=None, state="from the trials file" if reused else "editing")

        def on_stage(stage, done, total) -> None:
            bar.update(stage_task, completed=done, total=total, state=stage)

        best, trials = coordinate_search(
            axes, lambda settings: _run_trial(editor, model, tok, edits, settings, start_values, on_stage), log,
            objective, on_trial)
        bar.update(trials_task, completed=bar.tasks[trials_task].total, state="done")

    if not math.isfinite(best.score(objective)):
        fail(f"No trial of {editor} succeeded on these records (see {trials_path}); nothing was written.")
    final = choose_editor_hparams(editor, model, best.settings, benchmark=edits.dataset.benchmark,
                                  hparams_file=start_values)
    tuned_on = TunedOn(
        model=_model_name(model_name, model), benchmark=edits.dataset.benchmark, fingerprint=fingerprint,
        details={"split": edits.dataset.split or "file", "records": records, "seed": seed, "objective": objective,
                 "score": round(best.score(objective), 4), "trials": len(trials)})
    comment = _comment(editor, benchmark, split, records, objective, model_name, seed, trials, start)
    with atomic_path(out_path) as tmp:
        tmp.write_text(hparams_file_text(editor, final.hparams.file_values(), tuned_on, comment))
    out.print(_table(trials, objective, best))
    out.print(escape(f"Wrote {out_path}: use it with --hparams {out_path} on compare, stress, bench or edit."))


def _run_trial(editor, model, tok, edits, settings, start_file, on_stage):
    """One trial: the editor with these settings, applied to the edits by the harness and scored."""
    from editors.registry import make_editor
    from experiments.harness import run_batch
    from experiments.records import Settings
    from experiments.tuning import Trial, metrics_of

    try:
        built = make_editor(editor, model, settings, benchmark=edits.dataset.benchmark, hparams_file=start_file,
                            progress=on_stage)
        record = run_batch(built, model, tok, edits, settings=Settings(fluency_prompts=0, perplexity_tokens=0))
    except ValueError as error:  # a setting the model cannot take, or an edit that failed (EditError)
        return Trial(settings, {}, error=str(error))
    return Trial(settings, metrics_of(record.aggregate))


def _describe(settings, start) -> str:
    """The settings that differ from the starting point, e.g. "v_lr=1.0"."""
    from experiments.tuning import plain

    changed = [f"{name}={_short(value)}" for name, value in settings.items() if plain(getattr(start, name)) != value]
    return ", ".join(changed) or "defaults"


def _short(value) -> str:
    if isinstance(value, list):
        return f"{value[0]}-{value[-1]}" if value == list(range(value[0], value[-1] + 1)) else ",".join(map(str, value))
    return f"{value:g}" if isinstance(value, float) else str(value)


def _model_name(model_name: str, model) -> str:
    source = Path(str(getattr(model.config, "_name_or_path", "")))
    return model_name if model_name != "default" else f"default ({source.name})"


def _comment(editor, benchmark, split, records, objective, model_name, seed, trials, start) -> str:
    from experiments.tuning import OBJECTIVES

    lines = [f"Written by `editscope tune {editor} --benchmark {benchmark} --split {split} --records {records} "
             f"--objective {objective} --model {model_name} --seed {seed}` on "
             f"{datetime.date.today().isoformat()}.",
             f"Objective: {OBJECTIVES[objective][0]}. Started from: {', '.join(start.sources)}.",
             "Trials (settings that differ from the start: efficacy / generality / locality / objective):"]
    for trial in trials:
        metrics = trial.metrics
        shown = " / ".join("-" if metrics.get(name) is None else f"{metrics[name]:.3f}"
                           for name in ("efficacy_accuracy", "generality_accuracy", "locality_mean"))
        result = trial.error or f"{shown} / {trial.score(objective):.3f}"
        lines.append(f"  {_describe(trial.settings, start.hparams)}: {result}")
    return "\n".join(lines)


def _table(trials, objective, best) -> Table:
    from experiments.tuning import trial_key

    table = Table(title=f"Trials, best first (objective: {objective})")
    for column in ("Settings", "Eff", "Gen", "Loc", "Avg", "Objective"):
        table.add_column(column, justify="left" if column == "Settings" else "right")
    first = trials[0].settings
    for trial in sorted(trials, key=lambda t: -t.score(objective)):
        changed = ", ".join(f"{k}={_short(v)}" for k, v in trial.settings.items() if first[k] != v) or "defaults"
        marker = " (chosen)" if trial_key(trial.settings) == trial_key(best.settings) else ""
        cells = [_percent(trial.metrics.get(name)) for name in
                 ("efficacy_accuracy", "generality_accuracy", "locality_mean", "average")]
        score = trial.score(objective)
        table.add_row(changed + marker, *cells, f"{100 * score:.1f}" if math.isfinite(score) else trial.error or "-")
    return table


def _percent(value) -> str:
    return "-" if value is None else f"{100 * value:.1f}"
