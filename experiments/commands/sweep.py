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

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import torch.distributed as dist
from rich.console import Console

from covariance.distributed import Rank
from data.batches import BatchError
from editors.akd import batch_akd
from editors.hparams import EDITOR_HPARAMS, ValueOptimisationHparams
from editors.protocol import Editor
from editors.registry import make_editor
from experiments.commands.common import parse_csv_ints
from experiments.commands.compare import known_editor_names
from experiments.console import progress_bar
from experiments.discovery import EditorUnavailable, build_editor
from experiments.edit_sets import EditSet, draw_edits
from experiments.harness import run_batch, run_sequential
from experiments.identity import IdentityEditor
from experiments.records import RunRecord, Settings
from experiments.report import akd_entries


@dataclass(frozen=True)
class Job:
    """One harness run of a sweep: an editor (by line-up name) on one edit set."""

    editor: str
    edits: EditSet
    batch_size: int
    mode: str = "batch"  # "batch" or "sequential"
    label: str | None = None  # the report's run label (analyses["run_labels"])

    @property
    def title(self) -> str:
        size = f"{self.mode} of {self.batch_size}"
        return ", ".join(part for part in (self.editor, size, self.label or self.edits.dataset.benchmark) if part)


class SweepFailed(RuntimeError):
    """A job failed on another rank (the message names the rank and the error)."""


def batch_sizes_of(text: str, option: str) -> tuple[int, ...]:
    """Positive batch sizes from "1,10,50", ascending and without repeats (the plots' x axis);
    exits 2 naming `option` otherwise."""
    return tuple(sorted(set(parse_csv_ints(text, option))))


def is_key_value_editor(name: str) -> bool:
    """MEMIT, PMET, MEMIT-Merge, AlphaEdit: the editors that read a key at a token position."""
    entry = EDITOR_HPARAMS.get(name)
    return entry is not None and issubclass(entry[1], ValueOptimisationHparams)


def line_up(names: tuple[str, ...] | None, model: Any, out: Console,
            key_value_overrides: Mapping[str, Any] | None = None) -> dict[str, Editor]:
    """Line-up name -> editor, the unedited reference first. `names` None means every editor
    this checkout can build (those it cannot are listed and skipped); a named editor that
    cannot be built raises `EditorUnavailable`. `key_value_overrides` (e.g. key_token) go
    into the hyper-parameters of the key–value editors only."""
    lineup: dict[str, Editor] = {IdentityEditor.name: IdentityEditor()}
    for name in names if names is not None else known_editor_names():
        if name in lineup:
            continue
        try:
            lineup[name] = _build(name, model, key_value_overrides)
        except EditorUnavailable as why:
            if names is not None:
                raise
            out.print(f"[yellow]skipped {name}[/yellow]: {why}")
    return lineup


def _build(name: str, model: Any, key_value_overrides: Mapping[str, Any] | None) -> Editor:
    if not (key_value_overrides and is_key_value_editor(name)):
        return build_editor(name, model)
    try:
        return make_editor(name, model, key_value_overrides)
    except Exception as error:  # noqa: BLE001 - as build_editor: any failure means "cannot be built"
        raise EditorUnavailable(f"Editor {name!r} cannot be built: {error}") from error


def sweep_edits(benchmark: str, sizes: Sequence[int], edits: int | None, seed: int, split: str | None,
                option: str) -> EditSet:
    """The one seeded draw every editor and batch size of a sweep edits (`edits` of them, by
    default as many as the largest batch); raises one-sentence ValueErrors."""
    count = max(sizes) if edits is None else edits
    if max(sizes) > count:
        raise ValueError(f"{option} {max(sizes)} is larger than the {count} edits drawn (--edits).")
    try:
        return draw_edits(benchmark, count, seed, split)
    except BatchError as error:
        raise BatchError(f"{benchmark}: {error}") from None


def batch_size_jobs(lineup: Mapping[str, Editor], edits: EditSet, sizes: Sequence[int]) -> list[Job]:
    """Every editor of the line-up at every batch size, on the same edits (editor-major)."""
    return [Job(name, edits, size) for name in lineup for size in sizes]


def run_jobs(jobs: Sequence[Job], lineup: Mapping[str, Editor], model: Any, tok: Any,
             settings: Settings, rank: Rank, out: Console) -> list[RunRecord] | None:
    """Every job's record in job order on rank 0 (this rank's share run here); None elsewhere."""
    def run(index: int) -> RunRecord:
        job = jobs[index]
        harness = run_sequential if job.mode == "sequential" else run_batch
        with progress_bar(out, job.title, "batch") as update:
            return harness(lineup[job.editor], model, tok, job.edits, job.batch_size, settings, progress=update)

    return distribute(len(jobs), run, rank)


def job_akd_entries(jobs: Sequence[Job], model: Any, tok: Any, layers: Sequence[int],
                    key_token: str = "subject_last") -> list[dict]:
    """`analyses["akd"]` entries: the AKD of every job's edits (one batch, step 1) at `layers`,
    computed once per edit set however many editors ran on it."""
    per_edit_set: dict[int, dict[int, float]] = {}
    entries = []
    for index, job in enumerate(jobs):
        if id(job.edits) not in per_edit_set:
            per_edit_set[id(job.edits)] = batch_akd(model, tok, job.edits.requests, layers, key_token)
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
