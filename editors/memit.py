"""MEMIT (Meng et al. 2023, ALGORITHMS.md §3): one value per request, λ-regularised solve."""

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
