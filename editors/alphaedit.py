"""AlphaEdit (Fang et al., "AlphaEdit: Null-Space Constrained Knowledge Editing for Language
Models", ICLR 2025, method section): MEMIT's keys, its own value optimisation settings, and a
null-space-projected update.

The update of each layer is confined to the (approximate) null space of the preserved keys'
covariance C: P = U Uᵀ over the smallest-eigenvalue directions of C that hold at most a set
share of trace(C) (default 1%; the reference's absolute eigenvalue threshold τ = 2e-2 is the
other rule, but it keeps half of the keys' energy on a small model), so the outputs of those
keys barely move. Each layer's kept dimension and energy share go into the edit's info.
Keys of batches this editor has already applied to the model (Σ K Kᵀ per layer) enter the
solve, so later batches do not overwrite earlier ones. That memory lives on the editor instance
(never in a global), belongs to one model object, and is rolled back when a batch is undone.
"""

from __future__ import annotations

import torch

from editors.applied import WeightEdit
from editors.covariances import null_space, preserved_energy_share
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
            cached = (moment, null_space(moment, self.hparams.nullspace_rule, self.hparams.nullspace_value))
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
        # Per edited layer: the kept dimension (trace of a projector = its rank) and the share
        # of the preserved keys' energy inside it, trace(P C) / trace(C).
        info["null_space"] = {
            layer: {"dims": round(float(P.trace())), "of": P.shape[0],
                    "energy_share": preserved_energy_share(P, moment)}
            for layer, (moment, P) in sorted(self._projectors.items()) if layer in self.hparams.layers
        }
        return info
