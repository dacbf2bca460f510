"""A two-process gloo run gives the statistics of a single process (what torchrun would do)."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors import safe_open

from covariance.collect import CollectOptions
from covariance.corpus import Corpus, length_sorted_batches, token_sequences
from covariance.distributed import Rank, all_reduce_sum, current_rank
from covariance.stats import second_moments
from tiny_models import CORPUS_TEXT, tiny_model

CORPUS = Corpus("tiny", CORPUS_TEXT)
OPTIONS = CollectOptions(token_budget=300, max_length=24, batch_size=3, bf16=False, checkpoint_every=1)
LAYERS = [0, 1]
WORLD = 2


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rank_worker(index: int, port: int, model_dir: str, cache_root: str, report_dir: str) -> None:
    """One torchrun-like rank: environment as torchrun sets it, then the library call."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(index),
                      LOCAL_RANK=str(index), WORLD_SIZE=str(WORLD))
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    tok = AutoTokenizer.from_pretrained(model_dir)
    seen = []
    try:
        result = second_moments(model, tok, LAYERS, CORPUS, OPTIONS, progress=lambda done, todo: seen.append((done, todo)),
                                cache_root=Path(cache_root))  # rank=None: joins the group via current_rank()
        rank = current_rank()
        assert dist.get_backend() == "gloo" and rank == Rank(index, WORLD)
        report = {"rank": rank.index, "todo": seen[0][1], "done": seen[-1][0],
                  "tokens": {str(layer): m.tokens for layer, m in result.items()},
                  "paths": {str(layer): str(m.path) for layer, m in result.items()}}
        Path(report_dir, f"rank{index}.json").write_text(json.dumps(report))
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory, tiny_tok):
    folder = tmp_path_factory.mktemp("tiny-llama")
    tiny_model("llama", seed=8).save_pretrained(folder)
    tiny_tok.save_pretrained(folder)
    return folder


def test_two_gloo_processes_equal_one_process(saved_model, tmp_path, monkeypatch):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(saved_model).eval()
    tok = AutoTokenizer.from_pretrained(saved_model)
    batches = length_sorted_batches(
        token_sequences(tok, CORPUS, OPTIONS.max_length, OPTIONS.token_budget), OPTIONS.batch_size
    )
    assert len(batches) >= 4  # both ranks get several batches

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    single = second_moments(model, tok, LAYERS, CORPUS, OPTIONS, cache_root=tmp_path / "single", rank=Rank())

    shared, reports = tmp_path / "shared", tmp_path / "reports"
    reports.mkdir()
    mp.spawn(rank_worker, args=(free_port(), str(saved_model), str(shared), str(reports)), nprocs=WORLD, join=True)

    ranks = [json.loads((reports / f"rank{i}.json").read_text()) for i in range(WORLD)]
    assert [r["rank"] for r in ranks] == [0, 1]
    # each rank summed its own, non-empty, round-robin share of the batches
    for r in ranks:
        share = Rank(r["rank"], WORLD).shard(batches)
        assert r["todo"] == r["done"] == sum(len(ids) for batch in share for ids in batch) > 0
    assert sum(r["todo"] for r in ranks) == OPTIONS.token_budget
    for layer in LAYERS:
        path = single[layer].path
        written = shared / path.relative_to(tmp_path / "single")  # same key -> same name
        assert all(r["paths"][str(layer)] == str(written) for r in ranks)
        assert all(r["tokens"][str(layer)] == single[layer].tokens == OPTIONS.token_budget for r in ranks)
        with safe_open(str(written), framework="pt") as handle:
            total, metadata = handle.get_tensor("sum"), handle.metadata()
        assert int(metadata["tokens"]) == single[layer].tokens
        torch.testing.assert_close(total, single[layer].total, rtol=1e-10, atol=0)
    assert not list(shared.rglob("partial.*"))  # every rank removed its checkpoint
    # the rank-0 file is a valid cache entry for the single-process caller
    again = second_moments(model, tok, LAYERS, CORPUS, OPTIONS, cache_root=shared, rank=Rank())
    for layer in LAYERS:
        assert again[layer].path.is_relative_to(shared)
        torch.testing.assert_close(again[layer].total, single[layer].total, rtol=1e-10, atol=0)


def test_single_process_defaults(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert current_rank() == Rank(0, 1) and Rank().is_main
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert current_rank() == Rank(0, 1)
    tensors = [torch.ones(2)]
    assert all_reduce_sum(tensors, Rank()) is tensors
    items = list(range(7))
    shards = [Rank(i, 3).shard(items) for i in range(3)]
    assert sorted(sum(shards, [])) == items and shards[0] == [0, 3, 6]
