"""Sum k kᵀ at the input of the MLP output projection for several layers in one forward pass.

Every requested layer is hooked at once and the forward pass stops right after the highest
of them, so the layers above it and the lm head are never computed. Padding is masked out.
Per-batch products are computed in float32 (fast) and accumulated in float64 (exact enough
for millions of tokens).

For speed the forward can run on a bf16 copy of the model (`forward_copy`), by default where the
CPU multiplies bf16 natively (`lm.precision.bf16_is_fast`): on CPU, autocast
re-casts every frozen weight on every call (a quarter of the forward time, measured), while a
bf16 copy casts once. The copy costs half the model's fp32 memory while the statistic runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch

from lm.adapters import ArchAdapter
from lm.hooks import on_inputs, stop_after
from lm.memory import MemoryBudget, ModelShape, attention_bytes, block_token_bytes, chunk_for, run_in_chunks
from lm.precision import bf16_is_fast, cast_copy


@dataclass
class RunningSums:
    """Raw float64 sums Σ k kᵀ per layer, the token count, and how many batches went in."""

    sums: dict[int, torch.Tensor]
    tokens: int = 0
    batches_done: int = 0

    @classmethod
    def zeros(cls, layers: Sequence[int], width: int) -> "RunningSums":
        return cls({layer: torch.zeros(width, width, dtype=torch.float64) for layer in layers})


@dataclass(frozen=True)
class CollectOptions:
    token_budget: int = 100_000
    max_length: int = 256
    batch_size: int = 16
    # Forward in bf16 where the CPU has native bf16 products (~3x faster with AMX; ~3x slower
    # without); sums stay float64. The cache key records the forward dtype.
    bf16: bool = field(default_factory=bf16_is_fast)
    checkpoint_every: int = 8  # batches between resumable checkpoints


def forward_dtype(model: torch.nn.Module, bf16: bool) -> torch.dtype:
    return torch.bfloat16 if bf16 else next(model.parameters()).dtype


def forward_copy(model: torch.nn.Module, bf16: bool) -> torch.nn.Module:
    """The model to run the statistics forward on: itself, or a bf16 copy of it."""
    return cast_copy(model, forward_dtype(model, bf16))


def pad_batch(batch: list[list[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(ids) for ids in batch)
    input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, ids in enumerate(batch):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        mask[row, : len(ids)] = 1
    return input_ids.to(device), mask.to(device)


def forward_bytes_per_sequence(shape: ModelShape, tokens: int) -> int:
    """Estimated peak bytes one sequence of `tokens` tokens adds to the statistics forward: no
    graph is kept, so one block's working set (its MLP's d_ff-wide activations and their float32
    copy for the sum, queries/keys/values, attention scores) on top of the hidden states."""
    per_token = block_token_bytes(shape) + 4 * shape.ffn_width
    return tokens * per_token + attention_bytes(shape, tokens)


def accumulate_batches(
    model: torch.nn.Module,
    adapter: ArchAdapter,
    batches: Sequence[list[list[int]]],
    state: RunningSums,
    pad_id: int,
    on_batch: Callable[[RunningSums, int], None] | None = None,
    memory: MemoryBudget | None = None,
) -> RunningSums:
    """Add the keys of `batches[state.batches_done:]` to `state` (in place) and return it.

    `on_batch(state, batch_tokens)` runs after every batch (progress and checkpoints). A batch
    whose forward would not fit `memory` (default `MemoryBudget.resolve`) runs in smaller
    slices, and a slice that runs out of memory anyway is halved; the sums are the same (up to
    float rounding) and batches, checkpoints and cache keys do not change.
    """
    layers = sorted(state.sums)
    device = next(model.parameters()).device
    budget = memory or MemoryBudget.resolve(device)
    shape = ModelShape.from_model(model)
    modules = {str(layer): model.get_submodule(adapter.mlp_out_name(layer)) for layer in layers}
    last_block = model.get_submodule(adapter.block_name(layers[-1]))

    def add_slice(batch: list[list[int]]) -> None:
        input_ids, mask = pad_batch(batch, pad_id, device)
        real = mask.reshape(-1).bool()
        found: dict[int, torch.Tensor] = {}

        def add_keys(name: str, keys: torch.Tensor) -> None:
            flat = keys.reshape(-1, keys.shape[-1])[real].float()
            found[int(name)] = (flat.T @ flat).to("cpu", torch.float64)

        with torch.no_grad(), on_inputs(modules, add_keys), stop_after(last_block):
            model(input_ids=input_ids, attention_mask=mask, use_cache=False)
        for layer, product in found.items():  # only once the whole slice has run
            state.sums[layer] += product

    for batch in batches[state.batches_done :]:
        width = max(len(ids) for ids in batch)
        size = chunk_for(budget.room(device), [forward_bytes_per_sequence(shape, width)] * len(batch))
        run_in_chunks(len(batch), size, lambda rows: add_slice([batch[r] for r in rows]), device)
        batch_tokens = sum(len(ids) for ids in batch)
        state.tokens += batch_tokens
        state.batches_done += 1
        if on_batch is not None:
            on_batch(state, batch_tokens)
    return state
