"""The value optimisation under a memory budget: chunks from the estimate, equal values, and
halving instead of failing when the device runs out (tiny models; `perf/editing.py` and
`python -m perf.memory` measure the embedded model)."""

from __future__ import annotations

import dataclasses
import gc
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import editors.values as values_module
from data.requests import EditRequest
from editors.keys import essence_sites, request_sites, target_ids
from editors.values import ValueOptions, ValueProblem, group_bytes, optimise_values
from lm.adapters import adapter_for
from lm.memory import (MemoryBudget, ModelShape, c_library_function, chunk_for, is_out_of_memory, parse_size,
                       resident_bytes, run_in_chunks)
from tiny_models import tiny_model

SUBJECTS = ("France", "Water", "Rome", "Berlin", "Insulin", "Tea", "Cats")
REQUESTS = tuple(
    EditRequest(prompt=f"The capital of {subject} is", subject=subject, target_new="Paris", target_true="Rome")
    for subject in SUBJECTS
)
OPTIONS = ValueOptions(steps=4, lr=0.05, weight_decay=1e-3, clamp_factor=4.0, kl_factor=0.0625, early_stop=0.0)
LAYER = 1


class FixedRoom(MemoryBudget):
    """A budget with exactly `total` bytes of room, whatever the process holds (so the chunk
    depends on the estimate only, not on this machine's RSS)."""

    def room(self, device):
        return self.total

    def check(self, device, what):
        pass


@pytest.fixture(scope="module")
def problem(tiny_tok):
    model = tiny_model("llama", seed=0)
    sites = request_sites(tiny_tok, REQUESTS, "subject_last", ("Once upon a time. ",))
    return model, sites, essence_sites(tiny_tok, REQUESTS, "subject_last"), target_ids(tiny_tok, REQUESTS)


def optimise(problem, **kwargs):
    model, sites, essence, targets = problem
    site = (adapter_for(model).block_name(LAYER),)
    groups = [[r] for r in range(len(REQUESTS))]
    return optimise_values(model, ValueProblem(LAYER, sites, essence, targets, groups, site), OPTIONS, **kwargs)


def costs(problem) -> list[int]:
    model, sites, essence, targets = problem
    return group_bytes(ModelShape.from_model(model), 4, LAYER, sites, essence, targets,
                       [[r] for r in range(len(REQUESTS))], use_kl=True, eager=False)


def assert_same_values(a, b):
    for site in a.sites:
        # float32: a different batch shape only reorders sums (measured gap ~1e-6)
        torch.testing.assert_close(a.targets(site), b.targets(site), atol=1e-4, rtol=1e-4)
    assert torch.equal(a.updates, b.updates)


def test_a_budget_of_two_requests_gives_chunks_of_two_and_the_same_values(problem):
    whole = optimise(problem, memory=FixedRoom(10**15))
    assert whole.chunks == (len(REQUESTS),)
    room = int(2.5 * max(costs(problem)))
    chunked = optimise(problem, memory=FixedRoom(room))
    assert chunked.chunks == (2, 2, 2, 1)
    assert_same_values(chunked, whole)


def test_running_out_of_memory_halves_the_chunk_instead_of_failing(problem, monkeypatch):
    whole = optimise(problem, memory=FixedRoom(10**15))
    real_capture = values_module.capture_upper_state
    limit_rows = 3 * len(problem[1][0])  # a fake allocator that holds the sequences of 3 requests

    def capture_within_limit(runner, adapter, batch, layer):
        if len(batch.input_ids) > limit_rows:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (fake limit)")
        return real_capture(runner, adapter, batch, layer)

    monkeypatch.setattr(values_module, "capture_upper_state", capture_within_limit)
    survived = optimise(problem, memory=FixedRoom(10**15))  # the plan says: all 7 at once
    assert survived.chunks == (3, 3, 1)  # 7 ran out, then 3 did not
    assert_same_values(survived, whole)


def test_a_single_request_that_runs_out_still_fails_and_other_errors_are_not_retried():
    calls = []

    def always_out(indices):
        calls.append(len(indices))
        raise RuntimeError("CUDA out of memory. Tried to allocate 1 GiB")

    with pytest.raises(RuntimeError, match="out of memory"):
        run_in_chunks(5, 4, always_out, torch.device("cpu"))
    assert calls == [4, 2, 1]
    with pytest.raises(KeyError):
        run_in_chunks(5, 4, lambda indices: {}["missing"], torch.device("cpu"))
    assert is_out_of_memory(RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 1 GB"))
    assert not is_out_of_memory(ValueError("out of range"))


def test_chunks_start_from_the_live_memory_not_from_what_the_last_chunk_freed():
    """On glibc, freed heap pages stay resident until `malloc_trim`: a CPU budget measures RSS,
    so without the trim between chunks RSS would grow from chunk to chunk."""
    if c_library_function("malloc_trim") is None:
        pytest.skip("the C library has no malloc_trim (not glibc)")
    resident_after = []

    def run_chunk(indices):
        blocks = [bytearray(60_000) for _ in range(1_500)]  # ~90 MB in heap-sized blocks
        pinned = [bytearray(60_000) for _ in range(20)]  # malloc'd last: the heap top cannot shrink
        del blocks
        gc.collect()
        return pinned

    def record(indices):
        result = run_chunk(indices)
        resident_after.append(resident_bytes())
        return result

    kept = run_in_chunks(3, 1, record, torch.device("cpu"))  # kept: each chunk's pinned blocks stay live
    freed_by_release = resident_after[0] - resident_bytes()
    assert freed_by_release > 50 * 10**6  # the release after the last chunk gave the blocks back
    assert max(resident_after) - min(resident_after) < 50 * 10**6  # and RSS does not grow per chunk
    assert len(kept) == 3


FREED_BLOCKS_SCRIPT = """
import gc, sys
from lm.memory import keep_large_blocks_off_the_c_heap, resident_bytes
if sys.argv[1] == "fixed":
    keep_large_blocks_off_the_c_heap()
freed = bytearray(8 * 2**20)  # mmapped and freed: glibc's default then raises its threshold
del freed
blocks = [bytearray(600_000) for _ in range(200)]  # 120 MB of tensor-sized blocks
pinned = [bytearray(60_000) for _ in range(20)]
before = resident_bytes()
del blocks
gc.collect()
print(before - resident_bytes())
"""


def test_with_the_threshold_fixed_freed_tensor_sized_blocks_leave_rss_at_once():
    """glibc's dynamic mmap threshold puts blocks freed-then-reallocated on the heap, where
    their pages stay resident; `keep_large_blocks_off_the_c_heap` (called by an explicit CPU budget)
    keeps them mapped on their own, so RSS follows the live memory."""
    if c_library_function("mallopt") is None:
        pytest.skip("the C library has no mallopt (not glibc)")

    def released(mode: str) -> int:
        done = subprocess.run([sys.executable, "-c", FREED_BLOCKS_SCRIPT, mode], capture_output=True, text=True,
                              check=True, cwd=Path(__file__).resolve().parents[1])
        return int(done.stdout.strip())

    assert released("fixed") > 100 * 10**6
    assert released("dynamic") < 50 * 10**6


def test_chunk_for_takes_the_most_requests_that_fit():
    assert chunk_for(1000, [100] * 50) == 10
    assert chunk_for(1050, [100] * 5) == 5  # never more than there are
    assert chunk_for(-5, [100] * 5) == 1  # one request runs whatever the room
    assert chunk_for(999, [50, 100, 80]) == 3  # sized by the costliest


def test_memory_sizes_read_decimal_and_binary_units_and_refuse_nonsense():
    assert parse_size("24GB") == 24 * 10**9
    assert parse_size("80 GiB") == 80 * 2**30
    assert parse_size("512mb") == 512 * 10**6
    assert parse_size("1.5e9") == 1_500_000_000
    for bad in ("lots", "-3GB", "0", "12 parsecs"):
        with pytest.raises(ValueError):
            parse_size(bad)


def test_the_budget_comes_from_the_environment_when_not_given(monkeypatch):
    # An explicit budget would fix glibc's threshold for the rest of this test process (slower).
    monkeypatch.setattr("lm.memory.keep_large_blocks_off_the_c_heap", lambda: None)
    monkeypatch.setenv("EDITSCOPE_MAX_MEMORY", "3GB")
    assert MemoryBudget.resolve(torch.device("cpu")) == MemoryBudget(3 * 10**9, explicit=True)
    assert MemoryBudget.resolve(torch.device("cpu"), "1GB").total == 10**9
    monkeypatch.delenv("EDITSCOPE_MAX_MEMORY")
    default = MemoryBudget.resolve(torch.device("cpu"))
    assert not default.explicit and default.room(torch.device("cpu")) > 0
    assert dataclasses.replace(default, total=1).room(torch.device("cpu")) < 0


def test_covariance_batches_run_in_slices_that_fit_and_halve_when_out_of_memory(tiny_tok, monkeypatch):
    import covariance.collect as collect
    from covariance.collect import RunningSums, accumulate_batches
    from covariance.corpus import length_sorted_batches
    from tiny_models import SENTENCES

    model = tiny_model("llama", seed=0)
    adapter = adapter_for(model)
    batches = length_sorted_batches([tiny_tok(s)["input_ids"] for s in SENTENCES], 6)

    def sums(memory):
        state = accumulate_batches(model, adapter, batches, RunningSums.zeros([0, 2], 64), 1, memory=memory)
        return state

    whole = sums(FixedRoom(10**15))
    # Room for two sequences of the longest batch: every batch of 6 runs in slices.
    longest = max(len(ids) for batch in batches for ids in batch)
    two = sums(FixedRoom(2 * collect.forward_bytes_per_sequence(ModelShape.from_model(model), longest)))
    real_forward = model.forward

    def forward_within_limit(*args, input_ids, **kwargs):
        if len(input_ids) > 2:  # a fake allocator that holds two sequences
            raise torch.OutOfMemoryError("CUDA out of memory (fake limit)")
        return real_forward(*args, input_ids=input_ids, **kwargs)

    monkeypatch.setattr(model, "forward", forward_within_limit)
    halved = sums(FixedRoom(10**15))
    for result in (two, halved):
        assert result.tokens == whole.tokens and result.batches_done == whole.batches_done == len(batches)
        for layer in (0, 2):
            torch.testing.assert_close(result.sums[layer], whole.sums[layer], rtol=1e-6, atol=1e-6)
