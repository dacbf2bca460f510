"""Run only the upper part of a model: blocks `start`… on cached inputs, for a suffix of positions.

Value optimisation and FT-L call the model dozens of times on the same token sequences while
changing only something at (or above) one block. Everything below that block, and every position
before the first one the change can reach, is the same at every step, so it is computed once:

- `capture_upper_state` runs the whole model once and keeps (a) the hidden state entering block
  `start` at the suffix positions and (b) the attention keys/values of the prefix positions in
  blocks `start`… (the model's own KV cache).
- `run_upper` then feeds the cached hidden state into block `start` (the blocks below it are
  swapped for pass-throughs for the duration of the call) and lets the model attend to the cached
  prefix, so only `suffix length` positions of `layers − start` blocks are computed, forward and
  backward. It returns the final (normed) hidden states, so callers apply the lm head only at
  the rows they score.

Everything goes through the model's own forward (masks, rotary or learned positions, cache
handling), so it works for every family with an adapter. Sequences are laid out with the prefix
left-padded and the suffix right-padded (`SplitBatch`), so every row's suffix starts at the same
column and the cache has one length.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch
from torch import nn

from lm.adapters import ArchAdapter
from lm.hooks import StopForward


@dataclass(frozen=True)
class SplitBatch:
    """Token sequences cut into a prefix (unchanged by the optimisation) and a suffix.

    `input_ids` / `attention_mask` are [N, P + S]: prefixes left-padded to P columns, suffixes
    right-padded to S columns; `position_ids` count real tokens only, as if nothing were padded.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    position_ids: torch.Tensor
    prefix_width: int

    @classmethod
    def build(cls, prefixes: Sequence[Sequence[int]], suffixes: Sequence[Sequence[int]], pad_id: int) -> "SplitBatch":
        if any(len(s) == 0 for s in suffixes):
            raise ValueError("Every sequence needs at least one suffix token.")
        width_p = max(len(p) for p in prefixes)
        width_s = max(len(s) for s in suffixes)
        ids = torch.full((len(prefixes), width_p + width_s), pad_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, (prefix, suffix) in enumerate(zip(prefixes, suffixes)):
            start = width_p - len(prefix)
            ids[row, start:width_p] = torch.tensor(list(prefix), dtype=torch.long)
            ids[row, width_p : width_p + len(suffix)] = torch.tensor(list(suffix), dtype=torch.long)
            mask[row, start : width_p + len(suffix)] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        return cls(ids, mask, positions, width_p)

    @property
    def suffix_width(self) -> int:
        return self.input_ids.shape[1] - self.prefix_width

    def to(self, device) -> "SplitBatch":
        return SplitBatch(
            self.input_ids.to(device), self.attention_mask.to(device), self.position_ids.to(device), self.prefix_width
        )


@dataclass(frozen=True)
class UpperState:
    """What `run_upper` needs besides the model: cached block inputs and prefix keys/values."""

    batch: SplitBatch
    start: int
    block_inputs: torch.Tensor  # [N, S, d] hidden state entering block `start` at suffix columns
    prefix_kv: tuple[tuple[torch.Tensor, torch.Tensor], ...]  # blocks start…: [N, heads, P, hd]
    block_returns_tuple: bool

    def select(self, rows: torch.Tensor) -> "UpperState":
        """The same state for a subset of the rows (requests that are still optimising)."""
        batch = SplitBatch(
            self.batch.input_ids[rows],
            self.batch.attention_mask[rows],
            self.batch.position_ids[rows],
            self.batch.prefix_width,
        )
        kv = tuple((k[rows], v[rows]) for k, v in self.prefix_kv)
        return UpperState(batch, self.start, self.block_inputs[rows], kv, self.block_returns_tuple)


class _PassThrough(nn.Module):
    """Stands in for a block below `start`: returns its input in the block's return convention."""

    def __init__(self, as_tuple: bool):
        super().__init__()
        self.as_tuple = as_tuple

    def forward(self, hidden_states, *args, **kwargs):
        return (hidden_states,) if self.as_tuple else hidden_states


def base_model(model: nn.Module) -> nn.Module:
    """The decoder stack without the lm head (`model.model`, `model.transformer`, …)."""
    return model.base_model


def _block_list(model: nn.Module, adapter: ArchAdapter) -> nn.ModuleList:
    return model.get_submodule(adapter.blocks.rsplit(".", 1)[0])


def capture_upper_state(model: nn.Module, adapter: ArchAdapter, batch: SplitBatch, start: int) -> UpperState:
    """One unedited full pass that records what every later `run_upper` call reuses."""
    batch = batch.to(next(model.parameters()).device)
    with _watching_block(model, adapter, start, stop=False) as seen, torch.no_grad():
        output = base_model(model)(
            input_ids=batch.input_ids,
            attention_mask=batch.attention_mask,
            position_ids=batch.position_ids,
            use_cache=True,
        )
    cache = output.cache
    width_p = batch.prefix_width
    kv = tuple(
        (layer.keys[..., :width_p, :].detach(), layer.values[..., :width_p, :].detach())
        for layer in cache.layers[start:]
    )
    inputs = seen["input"][:, width_p:]
    return UpperState(batch, start, inputs.contiguous(), kv, bool(seen["tuple"]))


def block_input_state(model: nn.Module, adapter: ArchAdapter, batch: SplitBatch, layer: int) -> UpperState:
    """The hidden state entering block `layer` for a batch without prefix (forward stops there)."""
    if batch.prefix_width:
        raise ValueError("block_input_state caches whole sequences; build the batch without a prefix.")
    batch = batch.to(next(model.parameters()).device)
    with _watching_block(model, adapter, layer, stop=True) as seen, torch.no_grad():
        try:
            base_model(model)(
                input_ids=batch.input_ids,
                attention_mask=batch.attention_mask,
                position_ids=batch.position_ids,
                use_cache=False,
            )
        except StopForward:
            pass
    return UpperState(batch, layer, seen["input"], (), bool(seen["tuple"]))


@contextlib.contextmanager
def _watching_block(model: nn.Module, adapter: ArchAdapter, layer: int, stop: bool) -> Iterator[dict]:
    """While open, a forward records (in the yielded dict) the hidden state entering block
    `layer` ("input") and whether the block returns a tuple ("tuple"); `stop`: the forward then
    ends there with `StopForward`."""
    block = model.get_submodule(adapter.block_name(layer))
    seen: dict[str, object] = {}

    def keep_input(_module, args, kwargs):
        seen["input"] = (args[0] if args else kwargs["hidden_states"]).detach()

    def keep_output_kind(_module, _args, output):
        seen["tuple"] = isinstance(output, tuple)
        if stop:
            raise StopForward

    handles = [
        block.register_forward_pre_hook(keep_input, with_kwargs=True),
        block.register_forward_hook(keep_output_kind),
    ]
    try:
        yield seen
    finally:
        for handle in handles:
            handle.remove()


@contextlib.contextmanager
def _starting_at(model: nn.Module, adapter: ArchAdapter, state: UpperState) -> Iterator[None]:
    """Blocks below `state.start` pass through; block `start` receives the cached inputs."""
    blocks = _block_list(model, adapter)
    originals = [blocks[i] for i in range(state.start)]
    block = blocks[state.start]

    def feed_cached(_module, args, kwargs):
        if args:
            return (state.block_inputs, *args[1:]), kwargs
        return args, {**kwargs, "hidden_states": state.block_inputs}

    handle = block.register_forward_pre_hook(feed_cached, with_kwargs=True)
    try:
        for i in range(state.start):
            blocks[i] = _PassThrough(state.block_returns_tuple)
        yield
    finally:
        handle.remove()
        for i, original in enumerate(originals):
            blocks[i] = original


def _prefix_cache(state: UpperState):
    from transformers import DynamicCache

    if state.batch.prefix_width == 0:
        return None
    first_k, _ = state.prefix_kv[0]
    # Blocks below `start` never run, but the model reads the cache length (for masks and
    # positions) from the first layer, so they hold placeholders of that length and no data.
    placeholder = first_k.new_zeros(1, 1, state.batch.prefix_width, 1)
    return DynamicCache(ddp_cache_data=[(placeholder, placeholder)] * state.start + list(state.prefix_kv))


def run_upper(model: nn.Module, adapter: ArchAdapter, state: UpperState) -> torch.Tensor:
    """Final hidden states [N, S, d] at the suffix columns (after the final norm).

    Hooks registered by the caller on block `start` or above (e.g. adding a trainable vector)
    take effect; gradients flow to anything they add and to trainable weights at or above
    `start`.
    """
    batch = state.batch
    width_p = batch.prefix_width
    cache = _prefix_cache(state)
    # `cache` is transformers' current name for the key/value cache argument (5.x; the older
    # `past_key_values` is deprecated and prints a warning on every call).
    extra = {"cache": cache} if cache is not None else {}
    with _starting_at(model, adapter, state):
        output = base_model(model)(
            input_ids=batch.input_ids[:, width_p:],
            attention_mask=batch.attention_mask,
            position_ids=batch.position_ids[:, width_p:],
            use_cache=cache is not None,
            **extra,
        )
    return output.last_hidden_state
