"""`editscope stress`: editors under pressure. Same-subject batches (MEMIT-Merge Fig. 1 and
Table 1), growing batches (MedREK Tables 2–3), lifelong sequential editing.

Each subcommand checks its arguments and builds its edit sets before loading the model, runs
its (editor, edit set) jobs through `sweep` (so it scales out under torchrun) and publishes
one report.
"""

from __future__ import annotations

from typing import Sequence

import click
from rich.table import Table

from covariance.distributed import current_rank
from data.batches import BatchError, SubjectSetPair, natural_group_batch, same_and_distinct_subject_sets
from data.benchmarks import load_benchmark
from data.relations import RelationIndex, infer_relations
from editors.hparams import load_hparams
from data.requests import EditRequest
from experiments.commands.common import field_map_option, max_target_tokens_option
from experiments.commands.compare import BENCHMARK_HELP
from experiments.commands.sweep import (
    Job, batch_sizes_of, job_akd_entries, line_up, run_batch_size_sweep, run_jobs, sweep_edits,
)
from experiments.commands.sweep_options import SweepArguments, sweep_options
from experiments.console import fail
from experiments.edit_sets import EditSet, cut_long_targets, draw_edits, edit_set_of
from experiments.records import RunRecord
from experiments.report import DISTINCT_SUBJECT, SAME_SUBJECT
from experiments.report.formatting import fixed, percent
from experiments.tables import sequential_table
from lm.loading import load

NATURAL_GROUPS = "natural-groups"
SPLIT_HELP = "Split of a shipped benchmark (default: its test split)."


@click.group("stress")
def stress_command() -> None:
    """Stress tests: same-subject batches, growing batches, lifelong sequential editing."""


@stress_command.command("same-subject")
@click.option("--batch-sizes", default="1,2,5,10,20", show_default=True,
              help="Sizes of the paired same-/distinct-subject batches; at most the number of "
                   "CounterFact relations (24), one record per relation.")
@click.option("--key-token", type=click.Choice(["subject_last", "prompt_last"]), default=None,
              help="Key position of the key–value editors (MEMIT, PMET, MEMIT-Merge, AlphaEdit); "
                   "default: each editor's own setting (subject_last).")
@click.option("--natural", type=click.IntRange(min=0), default=100, show_default=True,
              help="Records in the extra batch of CounterFact's natural same-subject groups (0: skip it).")
@click.option("--split", type=click.Choice(["test", "train"]), default="test", show_default=True,
              help="CounterFact split the batches are drawn from (train when choosing settings).")
@sweep_options()
def same_subject_command(batch_sizes, key_token, natural, split, sweep: SweepArguments):
    """Efficacy on same- vs distinct-subject batches of CounterFact records, per editor and
    batch size, plus one batch of natural same-subject groups.

    Each same-subject batch is its distinct-subject twin with every subject renamed "John Smith";
    the report pairs the two (labels same-subject / distinct-subject) to judge which editors
    survive shared subjects, and plots efficacy against batch size.
    """
    sizes = batch_sizes_of(batch_sizes, "--batch-sizes")
    names = sweep.editor_names()
    rank = current_rank()
    out = sweep.console(rank)
    edit_sets = [pair for seed in sweep.seeds for pair in subject_edit_sets(sizes, natural, seed, split)]
    model, tok = load(sweep.model_name)
    akd_layer = load_hparams("memit", model.config.model_type).last_layer
    overrides = {"key_token": key_token} if key_token else None
    hparams = sweep.hparams("counterfact")
    lineup = line_up(names, model, out, overrides, hparams)
    jobs = [Job(name, edits, len(edits.requests), label=label)
            for name in lineup for label, edits in edit_sets]
    records = run_jobs(jobs, lineup, model, tok, sweep.settings, rank, out,
                       plan=sweep.worker_plan(len(jobs), overrides, hparams))
    if records is None:
        return
    akd = job_akd_entries(jobs, model, tok, [akd_layer], key_token or "subject_last")
    for seed in sweep.seeds:
        mine = [(job, record) for job, record in zip(jobs, records) if job.edits.seed == seed]
        out.print(same_subject_table([job for job, _ in mine], [record for _, record in mine],
                                     f"Same- vs distinct-subject efficacy, CounterFact {split}, seed {seed}, "
                                     f"key token {key_token or 'editor default'}"))
    analyses = {"run_labels": [job.label for job in jobs], "akd": akd}
    sweep.publish("stress same-subject", dict(batch_sizes=list(sizes), key_token=key_token, natural=natural,
                                              split=split),
                  records, out, analyses)


def subject_edit_sets(sizes: Sequence[int], natural: int, seed: int,
                      split: str = "test") -> list[tuple[str, EditSet]]:
    """(label, edits) in run order: for each size the distinct- then the same-subject batch,
    then the natural-groups batch, all from CounterFact's `split`. The sizes are prefixes of
    one pair built at the largest size, so a larger batch holds the smaller ones' facts."""
    splits = {name: load_benchmark("counterfact", name) for name in ("train", "test")}
    pool = splits[split]
    # Relations inferred from one split alone stay split (data.relations); train + test joins them.
    pair = subject_pair(pool, infer_relations(splits["train"] + splits["test"]), max(sizes), seed, "--batch-sizes")
    edit_sets = []
    for size in sizes:
        edit_sets.append((DISTINCT_SUBJECT, edit_set_of(pair.distinct_subject[:size], "counterfact", seed)))
        edit_sets.append((SAME_SUBJECT, edit_set_of(pair.same_subject[:size], "counterfact", seed)))
    if natural:
        edit_sets.append((NATURAL_GROUPS, edit_set_of(natural_group_batch(pool, natural, seed), "counterfact", seed)))
    return edit_sets


def subject_pair(pool: Sequence[EditRequest], relations: RelationIndex, size: int, seed: int,
                 option: str) -> SubjectSetPair:
    """MEMIT-Merge's paired sets of `size` records, one per relation; a size beyond the number
    of relations is refused naming `option`."""
    available = len({relations.relation_of(request) for request in pool})
    if size > available:
        raise BatchError(
            f"{option} {size} is larger than the {available} relations of the benchmark: a "
            "same-subject batch holds one record per relation, as two facts of one relation about "
            "one name contradict each other.")
    return same_and_distinct_subject_sets(pool, size, seed, relations=relations)


def same_subject_table(jobs: Sequence[Job], records: Sequence[RunRecord], title: str) -> Table:
    """Editor × batch size: efficacy (token acc. and MEMIT's per-token score) with the same and with
    distinct subjects; the natural-groups batch in the same-subject columns."""
    found = {(job.editor, job.label, job.batch_size): record for job, record in zip(jobs, records)}
    table = Table(title=title)
    for column in ("Editor", "Batch", "Same acc.", "Same score", "Distinct acc.", "Distinct score", "Drop acc."):
        table.add_column(column, justify="left" if column == "Editor" else "right", no_wrap=True)
    for editor in dict.fromkeys(job.editor for job in jobs):
        for size in dict.fromkeys(job.batch_size for job in jobs if job.label == SAME_SUBJECT):
            same = found[(editor, SAME_SUBJECT, size)].aggregate
            distinct = found[(editor, DISTINCT_SUBJECT, size)].aggregate
            table.add_row(editor, str(size), percent(same.efficacy_accuracy), percent(same.efficacy_score),
                          percent(distinct.efficacy_accuracy), percent(distinct.efficacy_score),
                          fixed(100 * (distinct.efficacy_accuracy - same.efficacy_accuracy), 1))
        for (name, label, size), record in found.items():
            if name == editor and label == NATURAL_GROUPS:
                table.add_row(editor, f"{size} natural", percent(record.aggregate.efficacy_accuracy),
                              percent(record.aggregate.efficacy_score), "–", "–", "–")
    return table


@stress_command.command("batch-sweep")
@click.option("--benchmark", default="medcfpp", show_default=True, help=BENCHMARK_HELP)
@click.option("--split", default=None, help=SPLIT_HELP)
@field_map_option
@max_target_tokens_option
@click.option("--batch-sizes", default="1,10,50,100", show_default=True,
              help="Batch sizes; every size edits the same drawn edits.")
@click.option("--edits", type=click.IntRange(min=1), default=None,
              help="Edits drawn once and edited at every batch size (default: the largest batch size).")
@sweep_options()
def batch_sweep_command(benchmark, split, fields, max_target_tokens, batch_sizes, edits, sweep: SweepArguments):
    """Every editor's scores against batch size on one benchmark (MedREK Tables 2–3 shape)."""
    sizes = batch_sizes_of(batch_sizes, "--batch-sizes")
    sweep.editor_names()  # exits 2 on an unknown name before anything is drawn or loaded
    rank = current_rank()
    out = sweep.console(rank)
    edit_sets = [sweep_edits(benchmark, sizes, edits, seed, split, "--batch-sizes", fields)
                 for seed in sweep.seeds]
    model, tok = load(sweep.model_name)
    records = run_batch_size_sweep(edit_sets, sizes, model, tok, max_target_tokens, sweep, rank, out)
    if records is None:
        return
    sweep.publish("stress batch-sweep", dict(benchmark=benchmark, split=split, batch_sizes=list(sizes), edits=edits,
                                             fields=fields and fields.spec, max_target_tokens=max_target_tokens),
                  records, out)


@stress_command.command("sequential")
@click.option("--steps", type=int, default=5, show_default=True, help="Batches applied one after another.")
@click.option("--batch", "batch_size", type=int, default=20, show_default=True, help="Edits per batch.")
@click.option("--benchmark", default="counterfact", show_default=True, help=BENCHMARK_HELP)
@click.option("--split", default=None, help=SPLIT_HELP)
@field_map_option
@max_target_tokens_option
@sweep_options()
def sequential_command(steps, batch_size, benchmark, split, fields, max_target_tokens, sweep: SweepArguments):
    """Lifelong editing: batches applied without undoing, everything edited so far scored after
    each; one degradation table per editor."""
    if steps <= 0:
        fail(f"--steps must be a positive number of batches, not {steps}.")
    if batch_size <= 0:
        fail(f"--batch must be a positive number of edits, not {batch_size}.")
    names = sweep.editor_names()
    rank = current_rank()
    out = sweep.console(rank)
    edit_sets = [draw_edits(benchmark, steps * batch_size, seed, split, fields,
                            asked_by=f"--steps {steps} × --batch {batch_size}") for seed in sweep.seeds]
    model, tok = load(sweep.model_name)
    edit_sets = [cut_long_targets(edit_set, tok, max_target_tokens) for edit_set in edit_sets]
    hparams = sweep.hparams(edit_sets[0].dataset.benchmark)  # one benchmark, every seed
    lineup = line_up(names, model, out, hparams=hparams)
    jobs = [Job(name, edit_set, batch_size, mode="sequential") for edit_set in edit_sets for name in lineup]
    records = run_jobs(jobs, lineup, model, tok, sweep.settings, rank, out,
                       plan=sweep.worker_plan(len(jobs), hparams=hparams))
    if records is None:
        return
    for record in records:
        out.print(sequential_table(record, f"{record.editor}: {steps} sequential batches of {batch_size} "
                                           f"from {record.dataset.benchmark}, seed {record.seed}"))
    sweep.publish("stress sequential", dict(steps=steps, batch=batch_size, benchmark=benchmark, split=split,
                                            fields=fields and fields.spec, max_target_tokens=max_target_tokens),
                  records, out)
