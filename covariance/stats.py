"""The entry point editors use: `second_moments(model, tok, layers)` → cached or computed C_l.

Cached layers are read; the missing ones are collected together in one truncated pass (split
over torchrun ranks when launched that way), checkpointed for resumption, reduced, and written
by rank 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from covariance.cache import (
    StatisticKey,
    cached_statistic,
    load_partial,
    partial_path,
    save_partial,
    save_statistic,
    statistic_path,
)
from covariance.collect import CollectOptions, RunningSums, accumulate_batches, forward_copy
from covariance.corpus import DEFAULT_CORPUS, Corpus, load_corpus, length_sorted_batches, token_sequences
from covariance.distributed import Rank, all_reduce_sum, barrier, current_rank
from covariance.identity import ModelFacts, keys_for_identity
from lm.adapters import adapter_for
from lm.errors import UsageError
from lm.progress import Progress



class LayerRangeError(UsageError):
    """Requested layers do not exist in the model."""


@dataclass(frozen=True)
class SecondMoment:
    """Σ k kᵀ (float64) over `tokens` tokens at one layer; `matrix()` is E[k kᵀ]."""

    layer: int
    total: torch.Tensor
    tokens: int
    path: Path | None = None

    def matrix(self) -> torch.Tensor:
        return self.total / self.tokens


def check_layers(model, layers: Sequence[int]) -> list[int]:
    count = adapter_for(model).num_layers(model)
    if not layers:
        raise LayerRangeError("No layers were requested.")
    bad = [layer for layer in layers if not 0 <= layer < count]
    if bad:
        raise LayerRangeError(f"Layers {bad} are out of range: this model has layers 0-{count - 1}.")
    return sorted(set(layers))


def statistic_keys(model, tok, layers, corpus: Corpus, options: CollectOptions) -> dict[int, StatisticKey]:
    return keys_for_identity(ModelFacts.of(model, tok), layers, corpus, options)


def second_moments(
    model,
    tok,
    layers: Sequence[int],
    corpus: str | Corpus = DEFAULT_CORPUS,
    options: CollectOptions = CollectOptions(),
    progress: Progress | None = None,
    cache_root: Path | None = None,
    rank: Rank | None = None,
) -> dict[int, SecondMoment]:
    """C_l for every requested layer, from the cache where possible."""
    layers = check_layers(model, layers)
    corpus = load_corpus(corpus) if isinstance(corpus, str) else corpus
    rank = rank or current_rank()
    _, width = adapter_for(model).widths(model)
    keys = statistic_keys(model, tok, layers, corpus, options)
    found: dict[int, SecondMoment] = {}
    for layer, key in keys.items():
        path = statistic_path(key, cache_root)
        cached = cached_statistic(path, key, width)
        if cached is not None:
            found[layer] = SecondMoment(layer, *cached, path)
    missing = [layer for layer in layers if layer not in found]
    if missing:
        found.update(_compute(model, tok, [keys[l] for l in missing], corpus, options, progress, cache_root, rank, width))
    return {layer: found[layer] for layer in layers}


def _compute(model, tok, keys, corpus, options, progress, cache_root, rank: Rank, width):
    layers = [key.layer for key in keys]
    sequences = token_sequences(tok, corpus, options.max_length, options.token_budget)
    batches = rank.shard(length_sorted_batches(sequences, options.batch_size))
    checkpoint = partial_path(keys, rank.index, rank.world, cache_root)
    state = RunningSums.zeros(layers, width)
    resumed = load_partial(checkpoint, layers)
    if resumed is not None:
        state = RunningSums(*resumed)
    todo = sum(len(ids) for batch in batches for ids in batch)
    if progress:
        progress(state.tokens, todo)

    def after_batch(current: RunningSums, _batch_tokens: int) -> None:
        if current.batches_done % options.checkpoint_every == 0:
            save_partial(checkpoint, current.sums, current.tokens, current.batches_done)
        if progress:
            progress(current.tokens, todo)

    pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    runner = forward_copy(model, options.bf16)
    accumulate_batches(runner, adapter_for(model), batches, state, pad_id, after_batch)
    del runner

    ordered = [state.sums[layer] for layer in layers]
    token_count = torch.tensor([float(state.tokens)], dtype=torch.float64)
    *reduced, token_count = all_reduce_sum(ordered + [token_count], rank)
    tokens = int(token_count.item())
    results = {}
    for key, total in zip(keys, reduced):
        path = statistic_path(key, cache_root)
        if rank.is_main:
            save_statistic(path, key, total, tokens)
        results[key.layer] = SecondMoment(key.layer, total, tokens, path)
    barrier(rank)
    checkpoint.unlink(missing_ok=True)
    return results
