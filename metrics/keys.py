"""Average Key Distance (AKD, MEMIT-Merge): how far apart a batch's MLP keys are at one layer.

Keys that nearly coincide (same subject) ask a key-value editor to map one key to several
values; a low AKD predicts low efficacy for MEMIT-style editors.
"""

from __future__ import annotations

import math
from typing import Mapping

import torch


def average_key_distance(keys: torch.Tensor) -> float:
    """Mean L2 distance over the B(B-1)/2 unordered pairs of rows of `keys` `[B, d]`.

    NaN when B < 2: a lone key has no pair, and 0 would wrongly read as "all keys collide".
    Computed in float64 (keys often arrive in bf16); memory grows as B², fine for batch sizes
    in the thousands.
    """
    if keys.dim() != 2:
        raise ValueError(f"keys must be a [batch, width] matrix, got shape {tuple(keys.shape)}.")
    if keys.shape[0] < 2:
        return math.nan
    return torch.pdist(keys.detach().double()).mean().item()


def average_key_distance_per_layer(keys_by_layer: Mapping[int, torch.Tensor]) -> dict[int, float]:
    """`average_key_distance` for each layer's keys of the same batch."""
    return {layer: average_key_distance(keys) for layer, keys in keys_by_layer.items()}
