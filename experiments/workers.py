"""Harness jobs spread over local worker processes, each with its own copy of the model.

Why: on a CPU the value optimisation of the key–value editors is made of many small matrix
products that two threads speed up by only ~1.2× (measured on the embedded model, 2 cores),
while two single-threaded processes editing different editors at once do twice the work. One
process cannot run two editors at once because an edit changes the shared model's weights.

How: `spawn`ed processes (never `fork`: torch's thread pools do not survive it) each load the
model by name, set their share of the cores as torch threads, then take jobs from one queue in
job order until it is empty, so a free worker always takes the next job. Every job builds its
editor by line-up name, runs the harness and sends back the record as a dict; the parent puts
the records back in job order. Work that every job shares (the unedited baseline, covariance
statistics, context prefixes) must be prepared in the parent first, or each worker repeats it.

Results do not depend on which worker ran a job, but they may differ from a single-process
run in the last floating-point bits: the thread count changes how sums are split. Cached value
vectors (editors/value_cache.py) are shared through the disk cache, so an editor reuses another
editor's values only if that job has finished when it starts.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import traceback
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Protocol, Sequence

import torch

from experiments.edit_sets import EditSet
from experiments.records import RunRecord, Settings
from lm.errors import UsageError

# How often the parent checks that its workers are still alive while it waits for a message.
POLL_SECONDS = 1.0
# Memory one worker may need: a MEMIT batch of 100 MedCF++ edits on the embedded model peaked
# at 6.2 GB resident (compare --batch 100). "auto" never starts more workers than fit.
WORKER_MEMORY_BYTES = 6 * 2**30


@dataclass(frozen=True)
class Job:
    """One harness run: an editor (by line-up name) on one edit set."""

    editor: str
    edits: EditSet
    batch_size: int
    mode: str = "batch"  # "batch" or "sequential"
    label: str | None = None  # the report's run label (analyses["run_labels"])

    @property
    def title(self) -> str:
        size = f"{self.mode} of {self.batch_size}"
        return ", ".join(part for part in (self.editor, size, self.label or self.edits.dataset.benchmark) if part)


@dataclass(frozen=True)
class WorkerPlan:
    """How many workers to start, and what each needs to rebuild the parent's line-up: the
    model by name, the run settings, how many torch threads to use, the overrides of the
    key–value editors and the weight editors' hyper-parameter choice."""

    workers: int
    model_name: str
    settings: Settings
    threads: int
    key_value_overrides: Mapping[str, Any] | None = None
    hparams: Any = None  # editors.hparams_files.HparamsRequest: benchmark tables and --hparams files


class WorkerFailed(RuntimeError):
    """A job raised in a worker, or a worker died (the message names the job)."""


def available_cores() -> int:
    """Cores this process may run on (the affinity mask, not the machine's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def physical_memory() -> int | None:
    """Bytes of RAM of this machine, or None where the OS does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def worker_count(requested: str, jobs: int) -> int:
    """`--workers`: a positive number, or "auto" = 1 on a GPU (one device is not shared
    well), else one per core up to 4 and as many as fit in memory (`WORKER_MEMORY_BYTES`
    each), never more than there are jobs. Raises ValueError."""
    if requested.strip().lower() == "auto":
        memory = physical_memory()
        fit = 4 if memory is None else max(1, memory // WORKER_MEMORY_BYTES)
        wanted = 1 if torch.cuda.is_available() else min(4, available_cores(), fit)
    else:
        try:
            wanted = int(requested)
        except ValueError:
            raise ValueError(f"--workers must be 'auto' or a positive whole number, not {requested!r}.") from None
        if wanted < 1:
            raise ValueError(f"--workers must be 'auto' or a positive whole number, not {requested!r}.")
    return max(1, min(wanted, jobs))


class JobEvents(Protocol):
    """What the parent is told while jobs run (`experiments.console.job_board` gives one)."""

    def started(self, index: int) -> None: ...
    def progress(self, index: int, done: int, total: int) -> None: ...
    def finished(self, index: int) -> None: ...


def run_in_workers(jobs: Sequence[Job], plan: WorkerPlan, events: JobEvents) -> list[RunRecord]:
    """Every job's record, in job order, computed by `plan.workers` spawned processes."""
    context = multiprocessing.get_context("spawn")
    todo, reports = context.Queue(), context.Queue()
    for index, job in enumerate(jobs):
        todo.put((index, job))
    for _ in range(plan.workers):
        todo.put(None)  # one stop sign per worker, after every job
    processes = [context.Process(target=_work, args=(plan, todo, reports), daemon=True)
                 for _ in range(plan.workers)]
    for process in processes:
        process.start()
    records: dict[int, RunRecord] = {}
    try:
        while len(records) < len(jobs):
            try:
                kind, index, payload = reports.get(timeout=POLL_SECONDS)
            except queue.Empty:
                _check_alive(processes, jobs, records)
                continue
            if kind == "started":
                events.started(index)
            elif kind == "progress":
                events.progress(index, *payload)
            elif kind == "done":
                records[index] = RunRecord.from_dict(payload)
                events.finished(index)
            elif kind == "refused":  # the user's mistake, found in a worker: one sentence
                raise UsageError(payload)
            else:
                raise WorkerFailed(f"Job '{jobs[index].title}' failed in a worker:\n{payload}")
    finally:
        for process in processes:
            if process.is_alive():
                process.terminate()
            process.join()
    return [records[index] for index in range(len(jobs))]


def _check_alive(processes: Sequence[Any], jobs: Sequence[Job], records: Mapping[int, RunRecord]) -> None:
    """A worker that died without reporting (killed, out of memory) would make us wait for ever."""
    for process in processes:
        if process.exitcode not in (None, 0):
            pending = [job.title for index, job in enumerate(jobs) if index not in records]
            raise WorkerFailed(f"A worker process exited with code {process.exitcode} before jobs "
                               f"{', '.join(repr(title) for title in pending)} reported.")


def _work(plan: WorkerPlan, todo: Any, reports: Any) -> None:
    """A worker's life: load the model, then run jobs until the stop sign."""
    # Imported here: the parent imports this module without needing the model stack twice.
    from experiments.discovery import build_lineup_editor
    from experiments.harness import run_batch, run_sequential
    from lm.loading import load

    torch.set_num_threads(plan.threads)
    model, tok = load(plan.model_name)
    editors: dict[str, Any] = {}
    while (item := todo.get()) is not None:
        index, job = item
        reports.put(("started", index, None))
        try:
            if job.editor not in editors:
                editors[job.editor] = build_lineup_editor(job.editor, model, plan.key_value_overrides, plan.hparams)
            harness = run_sequential if job.mode == "sequential" else run_batch
            record = harness(editors[job.editor], model, tok, job.edits, job.batch_size, plan.settings,
                             progress=_progress_sender(reports, index))
            reports.put(("done", index, record.to_dict()))
        except UsageError as error:
            reports.put(("refused", index, str(error)))
            return
        except Exception:  # noqa: BLE001 - a bug: the parent stops the run and shows this traceback
            reports.put(("failed", index, traceback.format_exc()))
            return


def _progress_sender(reports: Any, index: int) -> Callable[[int, int], None]:
    return lambda done, total: reports.put(("progress", index, (done, total)))
