"""MEMIT (Meng et al., "Mass-Editing Memory in a Transformer", ICLR 2023, §4 and Alg. 1): one
value per request, λ-regularised solve."""

from __future__ import annotations

import torch

from editors.kv_editor import KeyValueEditor
from editors.solve import memit_delta


class MemitEditor(KeyValueEditor):
    """ΔW_l = R Kᵀ (λ C_l + K Kᵀ)⁻¹ per layer, residual split evenly over the remaining layers."""

    name = "memit"

    @property
    def spread_rule(self) -> str:
        return self.hparams.spread_rule

    def solve(self, layer: int, residuals: torch.Tensor, keys: torch.Tensor, moments: dict) -> torch.Tensor:
        return memit_delta(residuals, keys, moments[layer].matrix(), self.hparams.mom2_update_weight)
