"""AlphaEdit (Fang et al., "AlphaEdit: Null-Space Constrained Knowledge Editing for Language
Models", ICLR 2025, method section): MEMIT's keys and values, null-space update.

The update of each layer is confined to the (approximate) null space of the preserved keys'
covariance, P = U Uᵀ over eigenvectors with eigenvalue < τ, so the outputs of those keys do not
move. Keys of batches this editor has already applied to the model (Σ K Kᵀ per layer) enter the
solve, so later batches do not overwrite earlier ones. That memory lives on the editor instance
(never in a global), belongs to one model object, and is rolled back when a batch is undone.
"""

from __future__ import annotations

import torch

from editors.applied import WeightEdit
from editors.covariances import null_space
from editors.kv_editor import KeyValueEditor
from editors.solve import alphaedit_delta
from editors.spread import SpreadResult


class AlphaEditEditor(KeyValueEditor):
    name = "alphaedit"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._projectors: dict[int, tuple[object, torch.Tensor]] = {}  # layer -> (moment, P)
        self._memory: dict[int, torch.Tensor] = {}  # layer -> Σ K Kᵀ of applied batches
        self._memory_model: object | None = None

    def apply(self, model, tok, requests) -> WeightEdit:
        if self._memory_model is not model:
            self._memory, self._memory_model = {}, model
        return super().apply(model, tok, requests)

    def prepare(self, model, tok) -> None:
        """Also the null-space projectors (cached beside the covariance files)."""
        super().prepare(model, tok)
        for layer, moment in self.moments(model, tok).items():
            self.projector(layer, moment)

    def projector(self, layer: int, moment) -> torch.Tensor:
        cached = self._projectors.get(layer)
        if cached is None or cached[0] is not moment:
            cached = (moment, null_space(moment, self.hparams.nullspace_threshold))
            self._projectors[layer] = cached
        return cached[1]

    def solve(self, layer: int, residuals: torch.Tensor, keys: torch.Tensor, moments: dict) -> torch.Tensor:
        return alphaedit_delta(
            residuals, keys, self.projector(layer, moments[layer]), self._memory.get(layer), self.hparams.alpha
        )

    def after_apply(self, edit: WeightEdit, spread: SpreadResult) -> None:
        before = dict(self._memory)
        for layer, keys in spread.keys.items():
            K = keys.double()
            self._memory[layer] = self._memory.get(layer, 0) + K.T @ K

        def forget_batch() -> None:
            self._memory = before

        edit.on_undo(forget_batch)

    def describe(self, batch, groups, values, spread) -> dict:
        info = super().describe(batch, groups, values, spread)
        info["null_space_dims"] = {
            layer: round(float(P.trace())) for layer, (_, P) in self._projectors.items()  # trace = rank
        }
        return info
