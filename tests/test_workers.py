"""Jobs run in local worker processes (experiments/workers.py): same records as one process,
in job order, and a failing job or a bad --workers value is reported, not hung on."""

from __future__ import annotations

import pytest
import torch
from rich.console import Console
from tiny_models import tiny_model

from covariance.distributed import Rank
from editors.registry import make_editor
from experiments.commands.sweep import batch_size_jobs, run_jobs
from experiments.edit_sets import draw_edits
from experiments.identity import IdentityEditor
from experiments.records import Settings
from experiments import workers
from experiments.workers import Job, WorkerFailed, WorkerPlan, available_cores, run_in_workers, worker_count
from lm.errors import UsageError

QUIET = Console(quiet=True)
SETTINGS = Settings(fluency_prompts=2, fluency_new_tokens=4, perplexity_tokens=32)


class Events:
    """Records what the parent is told, in order."""

    def __init__(self):
        self.seen: list[tuple[str, int]] = []

    def started(self, index: int) -> None:
        self.seen.append(("started", index))

    def progress(self, index: int, done: int, total: int) -> None:
        self.seen.append(("progress", index))

    def finished(self, index: int) -> None:
        self.seen.append(("finished", index))


@pytest.fixture
def tiny_folder(tmp_path, tiny_tok):
    """A tiny llama saved as a model folder, so spawned workers can load it by name."""
    model = tiny_model("llama", seed=3, layers=9)  # deep enough for the llama FT-L layer
    folder = tmp_path / "tiny-llama"
    model.save_pretrained(folder)
    tiny_tok.save_pretrained(folder)
    return folder


def test_two_workers_give_the_records_of_one_process_in_job_order(tiny_folder, tmp_cache):
    from lm.loading import load

    model, tok = load(str(tiny_folder))
    lineup = {IdentityEditor.name: IdentityEditor(), "ft_l": make_editor("ft_l", model)}
    jobs = batch_size_jobs(lineup, draw_edits("counterfact", 4, seed=1), (1, 4))
    single = run_jobs(jobs, lineup, model, tok, SETTINGS, Rank(), QUIET)
    # Same thread count as this process, so even the last bits of every sum must agree.
    plan = WorkerPlan(2, str(tiny_folder), SETTINGS, threads=torch.get_num_threads())
    events = Events()
    parallel = run_in_workers(jobs, plan, events=events)
    assert [(r.editor, r.batch_size) for r in parallel] == [("unedited", 1), ("unedited", 4), ("ft_l", 1), ("ft_l", 4)]
    assert [r.to_json(include_timings=False) for r in parallel] == [r.to_json(include_timings=False) for r in single]
    for index in range(len(jobs)):
        kinds = [kind for kind, job in events.seen if job == index]
        assert kinds[0] == "started" and kinds[-1] == "finished" and "progress" in kinds


def test_run_jobs_uses_workers_and_prepares_the_shared_baseline_once(tiny_folder, tmp_cache):
    from lm.loading import load

    model, tok = load(str(tiny_folder))
    lineup = {IdentityEditor.name: IdentityEditor(), "ft_l": make_editor("ft_l", model)}
    jobs = batch_size_jobs(lineup, draw_edits("counterfact", 3, seed=2), (3,))
    plan = WorkerPlan(2, str(tiny_folder), SETTINGS, threads=1)
    records = run_jobs(jobs, lineup, model, tok, SETTINGS, Rank(), QUIET, plan=plan)
    assert [r.editor for r in records] == ["unedited", "ft_l"]
    baselines = list((tmp_cache / "baselines").rglob("*.json"))
    assert any(path.name.startswith("locality-") for path in baselines)
    assert any(path.name.startswith("perplexity-") for path in baselines)
    # Read from the cache the parent filled, not recomputed by each worker.
    assert all(r.timings.baseline_seconds < 5 for r in records)


def test_a_usage_error_in_a_worker_reaches_the_parent_as_one(tiny_folder, tmp_cache):
    """A user's mistake found in a worker stays a UsageError (exit 2), not a WorkerFailed bug."""
    edits = draw_edits("counterfact", 2, seed=0)
    jobs = [Job(IdentityEditor.name, edits, 2), Job("no_such_editor", edits, 2)]
    plan = WorkerPlan(2, str(tiny_folder), SETTINGS, threads=1)
    with pytest.raises(UsageError, match="no_such_editor") as raised:
        run_in_workers(jobs, plan, events=Events())
    assert not isinstance(raised.value, WorkerFailed)


def test_worker_count_auto_and_explicit(monkeypatch):
    assert 1 <= worker_count("auto", 10) <= min(4, available_cores())
    monkeypatch.setattr(workers, "physical_memory", lambda: 8 * 2**30)  # room for one worker only
    assert worker_count("auto", 10) == 1
    assert worker_count("auto", 1) == 1
    assert worker_count("3", 10) == 3
    assert worker_count("8", 2) == 2  # never more workers than jobs
    for bad in ("0", "-1", "two", ""):
        with pytest.raises(ValueError, match="--workers must be 'auto' or a positive whole number"):
            worker_count(bad, 4)
