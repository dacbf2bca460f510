"""Scoring, generation and the spread's key reads under a memory budget: batches sized from
the estimate, the same numbers at any batch, and halving instead of failing when the device
runs out (tiny models; `runs` of the embedded model are in the README's memory section)."""

from __future__ import annotations

import pytest
import torch

import editors.keys as keys_module
from data.requests import EditRequest
from editors.applied import trial_deltas
from editors.keys import LayerwiseKeys, request_sites
from editors.memory_plan import spread_request_bytes
from lm.adapters import adapter_for
from lm.memory import (GENERATION_NEW_TOKENS, MemoryBudget, ModelShape, generation_row_bytes, scorer_batch_size,
                       scoring_row_bytes)
from lm.scoring import BATCH_SIZE, TOKENS_PER_ROW, LMScorer, TopKSampling
from tiny_models import tiny_model

PROMPTS = ["The capital of France is", "Water boils at", "Tea is", "The novel was written in English by",
           "Insulin treats", "Rome is in", "Cats are"]
TARGETS = [" Paris", " one hundred degrees", " hot", " John Smith", " diabetes", " Italy", " animals"]


class FixedRoom(MemoryBudget):
    """A budget with exactly `total` bytes of room, whatever the process holds."""

    def room(self, device):
        return self.total


def out_of_memory_above(rows: int, run):
    """`run`, behind a fake allocator that holds at most `rows` rows of a batch."""

    def limited(scorer, input_ids, *args, **kwargs):
        if len(input_ids) > rows:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (fake limit)")
        return run(scorer, input_ids, *args, **kwargs)

    return limited


def test_scorer_batches_are_the_most_rows_whose_scoring_and_generation_fit(tiny_llama):
    model, _ = tiny_llama
    shape = ModelShape.from_model(model)
    row = max(scoring_row_bytes(shape, TOKENS_PER_ROW),
              generation_row_bytes(shape, TOKENS_PER_ROW, GENERATION_NEW_TOKENS))
    assert scorer_batch_size(model, FixedRoom(int(5.5 * row))) == 5
    assert scorer_batch_size(model, FixedRoom(10**15)) == BATCH_SIZE  # never more than the default
    assert scorer_batch_size(model, FixedRoom(10**15), most=64) == 64
    assert scorer_batch_size(model, FixedRoom(-1)) == 1  # one row runs whatever the room


def test_row_estimates_grow_with_what_a_row_holds(tiny_llama):
    shape = ModelShape.from_model(tiny_llama[0])
    assert scoring_row_bytes(shape, 64) < scoring_row_bytes(shape, 128)
    assert generation_row_bytes(shape, 20, 10) < generation_row_bytes(shape, 20, 100)
    # every scored position may hold a float32 log-softmax row over the vocabulary
    assert scoring_row_bytes(shape, 128) > 128 * shape.vocab * 4


def test_scoring_that_runs_out_of_memory_halves_its_batch_and_scores_the_same(tiny_llama, monkeypatch):
    model, tok = tiny_llama
    alone = LMScorer(model, tok, batch_size=1).score(PROMPTS, TARGETS)
    monkeypatch.setattr(LMScorer, "forward_hidden", out_of_memory_above(2, LMScorer.forward_hidden))
    scorer = LMScorer(model, tok, batch_size=8)
    survived = scorer.score(PROMPTS, TARGETS)
    assert scorer.batch_size == 2  # 8 and 4 ran out; kept for the next call
    for a, b in zip(survived, alone):
        assert a.target_ids == b.target_ids and a.argmax_ids == b.argmax_ids
        assert a.logprobs == pytest.approx(b.logprobs, abs=1e-5)
    with pytest.raises(torch.OutOfMemoryError):  # one row that runs out still fails
        monkeypatch.setattr(LMScorer, "forward_hidden", out_of_memory_above(0, LMScorer.forward_hidden))
        scorer.score(PROMPTS, TARGETS)


def test_generation_that_runs_out_of_memory_halves_its_batch(tiny_llama, monkeypatch):
    model, tok = tiny_llama
    greedy = LMScorer(model, tok, batch_size=1).generate(PROMPTS, max_new_tokens=4)
    sampled = LMScorer(model, tok, batch_size=2).generate(PROMPTS, max_new_tokens=4, sampling=TopKSampling(seed=3))
    monkeypatch.setattr(LMScorer, "generate_ids", out_of_memory_above(2, LMScorer.generate_ids))
    scorer = LMScorer(model, tok, batch_size=8)
    assert scorer.generate(PROMPTS, max_new_tokens=4) == greedy
    assert scorer.batch_size == 2
    # Seeded sampling is redrawn from the seed: the texts of batch 2 from the start.
    assert LMScorer(model, tok, batch_size=8).generate(PROMPTS, 4, TopKSampling(seed=3)) == sampled


def test_spread_reads_in_chunks_from_the_budget_give_the_same_keys(tiny_tok, monkeypatch):
    model = tiny_model("llama", seed=0)
    adapter = adapter_for(model)
    requests = [EditRequest(prompt=p, subject=p.split()[-2], target_new=t.strip()) for p, t in zip(PROMPTS, TARGETS)]
    sites = request_sites(tiny_tok, requests, "subject_last", ("Once upon a time. ",))
    output = adapter.block_name(2)

    def read_all(memory):
        reader = LayerwiseKeys(model, sites, output, 2, memory=memory)
        generator = torch.Generator().manual_seed(0)
        found = []
        with trial_deltas(model) as add:
            for layer in (0, 1, 2):
                found.append(reader.read(layer))
                weight = adapter.mlp_out_weight(model, layer)
                add(f"{adapter.mlp_out_name(layer)}.weight", torch.randn(weight.shape, generator=generator) * 0.5)
        return reader.requests_per_read, found

    width = max(len(site.ids) for request in sites for site in request)
    cost = spread_request_bytes(ModelShape.from_model(model), len(sites[0]), width)
    chunks, whole = read_all(FixedRoom(10**15))
    assert chunks == len(requests)
    chunks, in_twos = read_all(FixedRoom(int(2.5 * cost)))
    assert chunks == 2
    real_run_upper = keys_module.run_upper
    refused = []

    def run_within_limit(model_, adapter_, state):
        if len(state.block_inputs) > 3 * len(sites[0]):  # a fake allocator holding 3 requests
            refused.append(len(state.block_inputs) // len(sites[0]))
            raise torch.OutOfMemoryError("CUDA out of memory (fake limit)")
        return real_run_upper(model_, adapter_, state)

    monkeypatch.setattr(keys_module, "run_upper", run_within_limit)
    chunks, halved = read_all(FixedRoom(10**15))  # the plan says all 7 at once: 7 → 3 → 3 → 1
    assert chunks == 3
    assert refused == [7]  # later reads start from the halved chunk
    for found in (in_twos, halved):
        for (keys, current), (keys_whole, current_whole) in zip(found, whole):
            torch.testing.assert_close(keys, keys_whole, atol=1e-5, rtol=1e-4)
            torch.testing.assert_close(current, current_whole, atol=1e-5, rtol=1e-4)
