"""Collected second moments equal a direct computation; padding is excluded; the forward
stops after the last requested layer; a second call reads the cache."""

from __future__ import annotations

import pytest
import torch

from covariance.collect import CollectOptions
from covariance.corpus import Corpus, length_sorted_batches, token_sequences
from covariance.stats import second_moments
from lm.adapters import adapter_for
from lm.hooks import on_inputs
from tiny_models import CORPUS_TEXT, tiny_model

CORPUS = Corpus("tiny", CORPUS_TEXT)
OPTIONS = CollectOptions(token_budget=300, max_length=24, batch_size=4, bf16=False, checkpoint_every=1)


def direct_sums(model, sequences, layers) -> tuple[dict[int, torch.Tensor], int]:
    """Σ k kᵀ in float64, one unpadded sequence at a time, keys read by a plain forward hook."""
    adapter = adapter_for(model)
    sums = {layer: torch.zeros(adapter.widths(model)[1], adapter.widths(model)[1], dtype=torch.float64)
            for layer in layers}
    handles = []
    for layer in layers:
        def hook(_module, args, layer=layer):
            keys = args[0][0].double()  # [tokens, d_ff] of the single row
            sums[layer] += keys.T @ keys

        handles.append(model.get_submodule(adapter.mlp_out_name(layer)).register_forward_pre_hook(hook))
    try:
        with torch.no_grad():
            for ids in sequences:
                model(input_ids=torch.tensor([ids]))
    finally:
        for handle in handles:
            handle.remove()
    return sums, sum(len(ids) for ids in sequences)


def assert_sums_close(actual: torch.Tensor, expected: torch.Tensor, rtol: float) -> None:
    """Relative agreement entry by entry, measured against the matrix's scale (off-diagonal
    entries near zero have no meaningful relative error of their own)."""
    assert actual.dtype == torch.float64 and actual.shape == expected.shape
    scale = expected.abs().max()
    assert scale > 0
    assert ((actual - expected).abs() <= rtol * (expected.abs() + scale)).all(), (
        f"max deviation {(actual - expected).abs().max() / scale:.2e} of the largest entry"
    )


@pytest.mark.parametrize("model_type", ["llama", "gpt2", "gptj"])
def test_collected_sums_equal_direct_computation(tmp_path, tiny_tok, model_type):
    model = tiny_model(model_type, seed=2)
    _, d_ff = adapter_for(model).widths(model)
    layers = [0, 1]
    sequences = token_sequences(tiny_tok, CORPUS, OPTIONS.max_length, OPTIONS.token_budget)
    expected, tokens = direct_sums(model, sequences, layers)
    assert tokens == OPTIONS.token_budget  # the budget is met exactly
    result = second_moments(model, tiny_tok, layers, CORPUS, OPTIONS, cache_root=tmp_path)
    assert sorted(result) == layers
    for layer in layers:
        moment = result[layer]
        assert moment.layer == layer and moment.tokens == tokens
        assert moment.total.shape == (d_ff, d_ff)
        assert_sums_close(moment.total, expected[layer], rtol=1e-6)
        torch.testing.assert_close(moment.matrix(), expected[layer] / tokens, rtol=1e-5, atol=1e-9)
        assert moment.path is not None and moment.path.is_file()
        assert moment.path.is_relative_to(tmp_path)
    # the two layers really are different statistics
    assert not torch.allclose(result[0].total, result[1].total)


def test_padding_is_excluded(tmp_path, tiny_tok):
    model = tiny_model("llama", seed=2)
    sequences = token_sequences(tiny_tok, CORPUS, OPTIONS.max_length, OPTIONS.token_budget)
    padded_batches = length_sorted_batches(sequences, OPTIONS.batch_size)
    assert any(len({len(ids) for ids in batch}) > 1 for batch in padded_batches)  # padding happens
    batched = second_moments(model, tiny_tok, [1], CORPUS, OPTIONS, cache_root=tmp_path / "batched")
    one_by_one = second_moments(
        model, tiny_tok, [1], CORPUS, CollectOptions(**{**OPTIONS.__dict__, "batch_size": 1}),
        cache_root=tmp_path / "single",
    )
    assert batched[1].tokens == one_by_one[1].tokens == OPTIONS.token_budget
    assert_sums_close(batched[1].total, one_by_one[1].total, rtol=1e-6)


def test_forward_stops_after_last_requested_layer_and_cache_is_reused(tmp_path, tiny_tok):
    model = tiny_model("llama", seed=2)
    adapter = adapter_for(model)
    watched = {str(i): model.get_submodule(adapter.block_name(i)) for i in range(3)}
    watched["lm_head"] = model.get_submodule(adapter.lm_head)
    calls = {name: 0 for name in watched}

    def count(name, _tensor):
        calls[name] += 1

    with on_inputs(watched, count):
        first = second_moments(model, tiny_tok, [1, 0, 1], CORPUS, OPTIONS, cache_root=tmp_path)
    batches = len(length_sorted_batches(
        token_sequences(tiny_tok, CORPUS, OPTIONS.max_length, OPTIONS.token_budget), OPTIONS.batch_size))
    assert batches > 1
    assert calls == {"0": batches, "1": batches, "2": 0, "lm_head": 0}  # one pass for both layers
    assert list(first) == [0, 1]  # duplicates and order do not matter: sorted layers

    calls.update({name: 0 for name in calls})
    with on_inputs(watched, count):
        again = second_moments(model, tiny_tok, [0, 1], CORPUS, OPTIONS, cache_root=tmp_path)
    assert calls == {"0": 0, "1": 0, "2": 0, "lm_head": 0}  # read from the cache, no forward
    for layer in (0, 1):
        assert again[layer].path == first[layer].path
        assert torch.equal(again[layer].total, first[layer].total)
        assert again[layer].tokens == first[layer].tokens
    files = sorted(p.name for p in tmp_path.rglob("*") if p.is_file() and not p.name.endswith(".seal"))
    assert len(files) == 2 and all(name.endswith(".safetensors") for name in files)
    assert not [name for name in files if name.startswith(("partial", "."))]


def test_cache_key_separates_dtype_budget_and_layer(tmp_path, tiny_tok):
    model = tiny_model("llama", seed=2)
    fp32 = second_moments(model, tiny_tok, [0], CORPUS, OPTIONS, cache_root=tmp_path)[0]
    bf16 = second_moments(model, tiny_tok, [0], CORPUS, CollectOptions(**{**OPTIONS.__dict__, "bf16": True}),
                          cache_root=tmp_path)[0]
    smaller = second_moments(model, tiny_tok, [0], CORPUS, CollectOptions(**{**OPTIONS.__dict__, "token_budget": 200}),
                             cache_root=tmp_path)[0]
    assert len({fp32.path, bf16.path, smaller.path}) == 3
    assert smaller.tokens == 200
    assert bf16.tokens == fp32.tokens
    # a bf16 forward approximates the fp32 statistic, but is a different cache entry
    assert not torch.equal(bf16.total, fp32.total)
    assert_sums_close(bf16.total, fp32.total, rtol=5e-2)
    assert next(model.parameters()).dtype == torch.float32  # the caller's model is untouched
