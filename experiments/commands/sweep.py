"""What the sweep commands (`stress`, `bench`, `akd`) share: the editor line-up, and running a
list of (editor, edit set) jobs on one process or across torchrun ranks (their common options
are in `sweep_options`).

Under `torchrun` (WORLD_SIZE > 1) every rank validates the same arguments, loads the model,
builds the same line-up and the same job list, then runs a disjoint round-robin share of the
jobs. Rank 0 gathers the records (`torch.distributed.gather_object`) and puts them back in job
order, so its report equals a single-process run's apart from timings; the other ranks write
nothing. Jobs run in whatever order on whichever rank, and each run restores the model it
edited, so where a job runs does not change its numbers.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import torch.distributed as dist
from rich.console import Console
from rich.markup import escape

from covariance.distributed import Rank
from editors.akd import batch_keys
from editors.hparams_files import HparamsRequest
from editors.protocol import Editor
from experiments.commands.common import parse_csv_ints
from experiments.commands.sweep_options import SweepArguments
from experiments.console import job_board, progress_bar
from experiments.discovery import LINEUP_NAMES, EditorUnavailable, build_lineup_editor, defaults_note
from experiments.edit_sets import EditSet, cut_long_targets, draw_edits
from experiments.harness import prepare_baseline, run_batch, run_sequential
from experiments.identity import IdentityEditor
from experiments.records import RunRecord, Settings
from experiments.tables import comparison_table
from experiments.report import akd_entries
from experiments.workers import Job, WorkerPlan, run_in_workers
from lm.errors import UsageError
from metrics.keys import average_key_distance_per_layer


class SweepFailed(RuntimeError):
    """A job failed on another rank (the message names the rank and the error)."""


def batch_sizes_of(text: str, option: str) -> tuple[int, ...]:
    """Positive batch sizes from "1,10,50", ascending and without repeats (the plots' x axis);
    exits 2 naming `option` otherwise."""
    return tuple(sorted(set(parse_csv_ints(text, option))))


def line_up(names: tuple[str, ...] | None, model: Any, out: Console,
            key_value_overrides: Mapping[str, Any] | None = None,
            hparams: HparamsRequest | None = None) -> dict[str, Editor]:
    """Line-up name -> editor, the unedited reference first. `names` None means every editor
    this checkout can build (those it cannot are listed and skipped); a named editor that
    cannot be built raises `EditorUnavailable`. `key_value_overrides` (e.g. key_token) go
    into the hyper-parameters of the key–value editors only; `hparams` chooses the weight
    editors' benchmark tables and files. Prints one line when their defaults were tuned on
    another model."""
    lineup: dict[str, Editor] = {IdentityEditor.name: IdentityEditor()}
    for name in names if names is not None else LINEUP_NAMES:
        if name in lineup:
            continue
        try:
            lineup[name] = build_lineup_editor(name, model, key_value_overrides, hparams)
        except EditorUnavailable as why:
            if names is not None:
                raise
            out.print(f"[yellow]skipped {name}[/yellow]: {why}")
    note = defaults_note(list(lineup), model, key_value_overrides, hparams)
    if note:
        out.print(f"[yellow]Note:[/yellow] {escape(note)}")
    return lineup


def sweep_edits(benchmark: str, sizes: Sequence[int], edits: int | None, seed: int, split: str | None,
                option: str, fields: Any = None) -> EditSet:
    """The one seeded draw every editor and batch size of a sweep edits (`edits` of them, by
    default as many as the largest batch; a file read through the field map `fields` when
    given); raises one-sentence ValueErrors."""
    count = max(sizes) if edits is None else edits
    if max(sizes) > count:
        raise UsageError(f"{option} {max(sizes)} is larger than the {count} edits drawn (--edits).")
    asked = f"{option} {count}" if edits is None else f"--edits {count}"
    return draw_edits(benchmark, count, seed, split, fields, asked_by=f"{benchmark}, {asked}")


def batch_size_jobs(lineup: Mapping[str, Editor], edits: EditSet, sizes: Sequence[int]) -> list[Job]:
    """Every editor of the line-up at every batch size, on the same edits (editor-major)."""
    return [Job(name, edits, size) for name in lineup for size in sizes]


def run_batch_size_sweep(edit_sets: Sequence[EditSet], sizes: Sequence[int], model: Any, tok: Any,
                         max_target_tokens: int | None, sweep: SweepArguments, rank: Rank,
                         out: Console) -> list[RunRecord] | None:
    """Every editor at every batch size on each edit set (targets cut to `max_target_tokens`),
    one table per edit set and batch size printed on rank 0: `run_jobs`' records (None off
    rank 0)."""
    edit_sets = [cut_long_targets(edit_set, tok, max_target_tokens) for edit_set in edit_sets]
    # The first edit set's benchmark picks the tables (`stress batch-sweep` has one benchmark;
    # the shipped medical tables of `bench medical` serve all three medical benchmarks).
    hparams = sweep.hparams(edit_sets[0].dataset.benchmark)
    lineup = line_up(sweep.editor_names(), model, out, hparams=hparams)
    jobs = [job for edit_set in edit_sets for job in batch_size_jobs(lineup, edit_set, sizes)]
    records = run_jobs(jobs, lineup, model, tok, sweep.settings, rank, out,
                       plan=sweep.worker_plan(len(jobs), hparams=hparams))
    for edit_set in edit_sets if records is not None else ():
        where = f"{edit_set.dataset.benchmark} ({edit_set.dataset.split or edit_set.dataset.file})"
        for size in sizes:
            mine = [record for job, record in zip(jobs, records) if job.edits is edit_set and job.batch_size == size]
            out.print(comparison_table(mine, f"{len(edit_set.requests)} edits from {where}, batch {size}, "
                                             f"seed {edit_set.seed}"))
    return records


def run_jobs(jobs: Sequence[Job], lineup: Mapping[str, Editor], model: Any, tok: Any,
             settings: Settings, rank: Rank, out: Console,
             plan: WorkerPlan | None = None) -> list[RunRecord] | None:
    """Every job's record in job order on rank 0 (this rank's share run here); None elsewhere.

    With one process (no torchrun) and a `plan` of more than one worker, the jobs run in
    local worker processes (experiments/workers.py), after the work they all share has been
    done once here."""
    if rank.world <= 1 and plan is not None and plan.workers > 1 and len(jobs) > 1:
        prepare_shared_work(jobs, lineup, model, tok, settings, out)
        with job_board(out, [job.title for job in jobs]) as events:
            return run_in_workers(jobs, plan, events)
    if rank.world > 1:
        # Every rank, in the same order, before the ranks part: missing covariance statistics
        # are collected as shards and all-reduced over all ranks, which a job running on one
        # rank alone would wait for for ever.
        with out.status("Preparing the editors' statistics (all ranks, once, cached)"):
            prepare_editors(jobs, lineup, model, tok)

    def run(index: int) -> RunRecord:
        job = jobs[index]
        harness = run_sequential if job.mode == "sequential" else run_batch
        with progress_bar(out, job.title, "batch") as update:
            return harness(lineup[job.editor], model, tok, job.edits, job.batch_size, settings, progress=update)

    return distribute(len(jobs), run, rank)


def prepare_shared_work(jobs: Sequence[Job], lineup: Mapping[str, Editor], model: Any, tok: Any,
                        settings: Settings, out: Console) -> None:
    """What every job would otherwise compute on its own, done once and cached: the unedited
    baselines of each edit set, and whatever an editor prepares for a model (`prepare(model,
    tok)`: e.g. covariance statistics and context prefixes)."""
    with out.status("Preparing the unedited baselines and the editors' statistics (once, cached)"):
        prepare_baseline(model, tok, list({id(job.edits): job.edits for job in jobs}.values()), settings)
        prepare_editors(jobs, lineup, model, tok)


def prepare_editors(jobs: Sequence[Job], lineup: Mapping[str, Editor], model: Any, tok: Any) -> None:
    """`prepare(model, tok)` of every editor the jobs use, in line-up order."""
    for name in dict.fromkeys(job.editor for job in jobs):
        lineup[name].prepare(model, tok)


def job_akd_entries(jobs: Sequence[Job], model: Any, tok: Any, layers: Sequence[int],
                    key_token: str = "subject_last") -> list[dict]:
    """`analyses["akd"]` entries: the AKD of every job's edits (one batch, step 1) at `layers`,
    computed once per edit set however many editors ran on it."""
    per_edit_set: dict[int, dict[int, float]] = {}
    entries = []
    for index, job in enumerate(jobs):
        if id(job.edits) not in per_edit_set:
            keys = batch_keys(model, tok, job.edits.requests, layers, key_token)
            per_edit_set[id(job.edits)] = average_key_distance_per_layer(keys)
        entries += akd_entries(index, 1, per_edit_set[id(job.edits)])
    return entries


def distribute(count: int, run: Callable[[int], RunRecord], rank: Rank) -> list[RunRecord] | None:
    """Run jobs `rank_share(count, rank)` with `run(index)`; rank 0 returns all `count` records
    in index order, the other ranks None. One process simply runs every job in order."""
    if rank.world <= 1:
        return [run(index) for index in range(count)]
    done: list[tuple[int, dict]] = []
    failure: BaseException | None = None
    try:
        for index in rank_share(count, rank):
            done.append((index, run(index).to_dict()))
    # Every rank must reach the gather, or the others wait for it for ever; the error is
    # re-raised right after it.
    except Exception as error:  # noqa: BLE001
        failure = error
    shards = _gather((done, None if failure is None else f"{type(failure).__name__}: {failure}"), rank)
    if failure is not None:
        raise failure
    if shards is None:
        return None
    for index, (_, message) in enumerate(shards):
        if message is not None:
            raise SweepFailed(f"Rank {index} failed: {message}")
    return merge_shards([records for records, _ in shards], count)


def rank_share(count: int, rank: Rank) -> list[int]:
    """The job indices of one rank: round robin, so ranks get similar mixes of jobs."""
    return rank.shard(list(range(count)))


def merge_shards(shards: Sequence[Sequence[tuple[int, dict]]], count: int) -> list[RunRecord]:
    """Records of every rank back in job order; each of the `count` jobs must occur once."""
    by_index: dict[int, dict] = {}
    for shard in shards:
        for index, record in shard:
            if index in by_index:
                raise SweepFailed(f"Job {index} was run twice.")
            by_index[index] = record
    if set(by_index) != set(range(count)):
        missing = sorted(set(range(count)) - set(by_index))
        extra = sorted(set(by_index) - set(range(count)))
        raise SweepFailed(f"The gathered records do not match the {count} jobs (missing {missing}, "
                          f"unknown {extra}).")
    return [RunRecord.from_dict(by_index[index]) for index in range(count)]


def _gather(payload: Any, rank: Rank) -> list | None:
    shards = [None] * rank.world if rank.is_main else None
    dist.gather_object(payload, shards, dst=0)
    return shards
