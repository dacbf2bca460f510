"""Sweeps split over torchrun ranks: every job runs exactly once, and rank 0's merged records
are those of a single process, in the same order."""

from __future__ import annotations

import json
import os
import random
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from rich.console import Console
from test_report_fixtures import run
from tiny_models import tiny_model

from covariance.distributed import Rank, current_rank
from editors.registry import make_editor
from experiments.commands.sweep import (
    SweepFailed, batch_size_jobs, distribute, merge_shards, rank_share, run_jobs,
)
from experiments.edit_sets import draw_edits
from experiments.identity import IdentityEditor
from experiments.records import Settings

WORLD = 2
QUIET = Console(quiet=True)
NO_EXTRAS = Settings(fluency_prompts=0, perplexity_tokens=0)


def fake_records(count: int) -> list:
    return [run(f"editor{index}", batch_size=index + 1, eff=index / 10) for index in range(count)]


@pytest.mark.parametrize("world", [1, 2, 3, 4, 7])
def test_rank_shares_cover_every_job_exactly_once_and_evenly(world):
    for count in range(0, 12):
        shares = [rank_share(count, Rank(index, world)) for index in range(world)]
        assert sorted(job for share in shares for job in share) == list(range(count))
        assert max(map(len, shares)) - min(map(len, shares)) <= 1


@pytest.mark.parametrize("world", [1, 2, 3, 5])
def test_merging_shards_in_any_order_restores_the_job_order(world):
    records = fake_records(7)
    shards = [[(job, records[job].to_dict()) for job in rank_share(7, Rank(index, world))]
              for index in range(world)]
    random.Random(world).shuffle(shards)  # ranks may answer in any order
    merged = merge_shards(shards, len(records))
    assert [record.to_json() for record in merged] == [record.to_json() for record in records]


def test_merging_refuses_repeated_or_missing_jobs():
    records = [record.to_dict() for record in fake_records(3)]
    with pytest.raises(SweepFailed, match="Job 1 was run twice."):
        merge_shards([[(0, records[0]), (1, records[1])], [(1, records[1]), (2, records[2])]], 3)
    with pytest.raises(SweepFailed, match=r"missing \[2\]"):
        merge_shards([[(0, records[0])], [(1, records[1])]], 3)


def test_jobs_split_over_ranks_give_the_single_process_records(tiny_tok, tmp_cache):
    """Real harness runs on a tiny model: the jobs run per rank share, ranks in reverse order,
    then merged, equal one process running them all (timings aside)."""
    model = tiny_model("llama", seed=3, layers=9)  # deep enough for the llama hparams' layers
    lineup = {IdentityEditor.name: IdentityEditor(), "ft_l": make_editor("ft_l", model)}
    jobs = batch_size_jobs(lineup, draw_edits("counterfact", 4, seed=1), (1, 4))
    single = run_jobs(jobs, lineup, model, tiny_tok, NO_EXTRAS, Rank(), QUIET)

    def run_one(job: int) -> dict:
        return run_jobs([jobs[job]], lineup, model, tiny_tok, NO_EXTRAS, Rank(), QUIET)[0].to_dict()

    shards = [[(job, run_one(job)) for job in reversed(rank_share(len(jobs), Rank(index, WORLD)))]
              for index in reversed(range(WORLD))]
    merged = merge_shards(shards, len(jobs))
    assert [(r.editor, r.batch_size) for r in merged] == [("unedited", 1), ("unedited", 4), ("ft_l", 1), ("ft_l", 4)]
    assert [r.to_json(include_timings=False) for r in merged] == [r.to_json(include_timings=False) for r in single]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rank_worker(index: int, port: int, out_dir: str) -> None:
    """One torchrun-like rank: a sweep of 5 fake jobs, then a sweep of 2 whose job 1 (rank 1's)
    fails."""
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(index),
                      LOCAL_RANK=str(index), WORLD_SIZE=str(WORLD))
    records = fake_records(5)
    ran: list[int] = []
    broken: set[int] = set()

    def fake_run(job: int):
        ran.append(job)
        if job in broken:
            raise ValueError(f"job {job} broke")
        return records[job]

    try:
        rank = current_rank()
        merged = distribute(5, fake_run, rank)
        report = {"ran": list(ran), "merged": None if merged is None else [r.editor for r in merged]}
        broken.add(1)
        try:
            distribute(2, fake_run, rank)
            report["failure"] = None
        except (SweepFailed, ValueError) as error:
            report["failure"] = f"{type(error).__name__}: {error}"
        Path(out_dir, f"rank{index}.json").write_text(json.dumps(report))
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def test_two_gloo_ranks_gather_records_in_job_order_and_report_failures(tmp_path, monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    mp.spawn(rank_worker, args=(free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    first, second = (json.loads((tmp_path / f"rank{index}.json").read_text()) for index in range(WORLD))
    assert first["ran"][:3] == [0, 2, 4] and second["ran"][:2] == [1, 3]
    assert first["merged"] == [f"editor{index}" for index in range(5)] and second["merged"] is None
    assert first["failure"] == "SweepFailed: Rank 1 failed: ValueError: job 1 broke"
    assert second["failure"] == "ValueError: job 1 broke"
