"""Named hooks as context managers: every hook is removed when its block exits, errors included.

Decoder layers in recent transformers return either a tuple or a bare tensor; every hook here
handles both, so callers never look at the return convention.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator, Mapping, Sequence

import torch
from torch import nn


class StopForward(Exception):
    """Raised inside a forward pass to skip the layers nobody needs (see `stop_after`)."""


def _main_tensor(output):
    return output[0] if isinstance(output, tuple) else output


def _replace_main_tensor(output, tensor):
    return (tensor, *output[1:]) if isinstance(output, tuple) else tensor


@contextlib.contextmanager
def _registered(handles: list) -> Iterator[None]:
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


@contextlib.contextmanager
def on_inputs(
    modules: Mapping[str, nn.Module], fn: Callable[[str, torch.Tensor], None]
) -> Iterator[None]:
    """Call `fn(name, first_positional_input)` every time one of `modules` runs."""

    def hook_for(name):
        return lambda _module, args: fn(name, args[0])

    handles = [m.register_forward_pre_hook(hook_for(n)) for n, m in modules.items()]
    with _registered(handles):
        yield


@contextlib.contextmanager
def on_outputs(
    modules: Mapping[str, nn.Module], fn: Callable[[str, torch.Tensor], None]
) -> Iterator[None]:
    """Call `fn(name, main_output_tensor)` every time one of `modules` runs."""

    def hook_for(name):
        return lambda _module, _args, output: fn(name, _main_tensor(output))

    handles = [m.register_forward_hook(hook_for(n)) for n, m in modules.items()]
    with _registered(handles):
        yield


class Captured(dict):
    """name -> the tensor seen in the latest forward pass (inputs or outputs)."""


@contextlib.contextmanager
def capture(
    modules: Mapping[str, nn.Module], what: str = "output", detach: bool = True
) -> Iterator[Captured]:
    """Record the latest input (`what="input"`) or output of each named module."""
    captured = Captured()

    def keep(name, tensor):
        captured[name] = tensor.detach() if detach else tensor

    if what not in ("input", "output"):
        raise ValueError(f"capture(what=...) must be 'input' or 'output', not {what!r}.")
    watcher = on_inputs if what == "input" else on_outputs
    with watcher(modules, keep):
        yield captured


@contextlib.contextmanager
def add_at_positions(
    module: nn.Module,
    vectors: torch.Tensor,
    rows: Sequence[int] | torch.Tensor,
    positions: Sequence[int] | torch.Tensor,
) -> Iterator[None]:
    """Add `vectors[i]` to the module's output at (batch row `rows[i]`, token `positions[i]`).

    Gradients flow into `vectors`, which is how value optimisation trains a free vector.
    """
    rows = torch.as_tensor(rows, dtype=torch.long)
    positions = torch.as_tensor(positions, dtype=torch.long)
    if not (len(rows) == len(positions) == len(vectors)):
        raise ValueError("add_at_positions needs one row and one position per vector.")

    def hook(_module, _args, output):
        hidden = _main_tensor(output)
        index = (rows.to(hidden.device), positions.to(hidden.device))
        hidden = hidden.index_put(index, vectors.to(hidden.dtype), accumulate=True)
        return _replace_main_tensor(output, hidden)

    handles = [module.register_forward_hook(hook)]
    with _registered(handles):
        yield


@contextlib.contextmanager
def stop_after(module: nn.Module) -> Iterator[None]:
    """Abort the forward pass as soon as `module` has run; the block exits normally.

    Usage: `with stop_after(block): model(**batch)` — collect what you need with other hooks.
    Enter those hooks first (to the left in one `with`): hooks registered on `module` itself
    after this one never run, because PyTorch calls a module's hooks in registration order.
    """

    def hook(_module, _args, _output):
        raise StopForward

    handles = [module.register_forward_hook(hook)]
    with _registered(handles):
        try:
            yield
        except StopForward:
            pass
