"""The applied handle of locate-then-edit editors: weight deltas added to a model, exactly undoable.

Undo restores exact copies of the rewritten matrices rather than subtracting the deltas, since
`(W + Δ) − Δ` is not `W` in floating point. The same machinery gives `trial_deltas`, which
editors use to see the partially edited model while they compute later layers' deltas.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Callable, Iterator, Mapping

import torch
from torch import nn

from editors.protocol import EditError
from lm.scoring import LMScorer


def _check_deltas(model: nn.Module, deltas: Mapping[str, torch.Tensor]) -> dict[str, nn.Parameter]:
    """Parameters the deltas apply to; refuses a wrong name, shape, dtype or a non-finite delta."""
    params = dict(model.named_parameters())
    found = {}
    for name, delta in deltas.items():
        if name not in params:
            raise EditError(f"The model has no parameter {name!r} to edit.")
        param = params[name]
        if delta.shape != param.shape or delta.dtype != param.dtype:
            raise EditError(
                f"The update for {name} is {tuple(delta.shape)} {delta.dtype}, but the weight is "
                f"{tuple(param.shape)} {param.dtype}; nothing was applied."
            )
        if not bool(torch.isfinite(delta).all()):
            raise EditError(f"The update for {name} is not finite; nothing was applied.")
        found[name] = param
    return found


class WeightEdit:
    """A live weight edit; `undo()` puts back bit-identical copies of the original weights.

    `scorer` scores the edited model (the seam metrics use); `info` holds what the editor wants
    recorded (`info["editor"]`, layers, λ, losses, timings). Undo edits in the reverse order
    they were applied.
    """

    def __init__(self, model: nn.Module, tok, originals: dict[str, torch.Tensor], info: dict):
        self.model = model
        self.tok = tok
        self.info = info
        self._originals = originals
        self._on_undo: list[Callable[[], None]] = []
        self.undone = False

    @classmethod
    def apply(cls, model: nn.Module, tok, deltas: Mapping[str, torch.Tensor], info: dict | None = None) -> "WeightEdit":
        """Check every delta, then add them all (nothing is added if any check fails)."""
        params = _check_deltas(model, deltas)
        originals = {name: param.detach().clone() for name, param in params.items()}
        with torch.no_grad():
            for name, param in params.items():
                param.add_(deltas[name].to(param.device))
        return cls(model, tok, originals, dict(info or {}))

    @property
    def scorer(self) -> LMScorer:
        return LMScorer.within_budget(self.model, self.tok)

    @property
    def edited_parameters(self) -> tuple[str, ...]:
        return tuple(self._originals)

    def save(self, folder: Path) -> None:
        """The edited model and its tokenizer as a model folder (`lm.loading.load` reads it)."""
        save_model_folder(folder, self.model, self.tok)

    def on_undo(self, callback: Callable[[], None]) -> None:
        """Run `callback` when the edit is undone (an editor's own memory of applied batches)."""
        self._on_undo.append(callback)

    def undo(self) -> None:
        """Restore the original weights exactly; a second call does nothing."""
        if self.undone:
            return
        params = dict(self.model.named_parameters())
        with torch.no_grad():
            for name, original in self._originals.items():
                params[name].copy_(original)
        for callback in reversed(self._on_undo):
            callback()
        self.undone = True


def save_model_folder(folder: Path, model: nn.Module, tok) -> None:
    """`model` and `tok` as a model folder (what `lm.loading.load` reads)."""
    model.save_pretrained(folder, safe_serialization=True)
    tok.save_pretrained(folder)


@contextlib.contextmanager
def trial_deltas(model: nn.Module) -> Iterator[Callable[[str, torch.Tensor], None]]:
    """Yield `add(name, delta)`; every weight touched inside the block is restored exactly on exit.

    Editors that spread an update over layers need the partially edited model to compute the
    next layer, but must leave the model untouched until every delta is known to be finite.
    """
    params = dict(model.named_parameters())
    originals: dict[str, torch.Tensor] = {}

    def add(name: str, delta: torch.Tensor) -> None:
        param = params[name]
        if name not in originals:
            originals[name] = param.detach().clone()
        with torch.no_grad():
            param.add_(delta.to(param.device))

    try:
        yield add
    finally:
        with torch.no_grad():
            for name, original in originals.items():
                params[name].copy_(original)
