"""Working copies of a model in another precision, for passes that only read its weights."""

from __future__ import annotations

import copy

import torch


def cast_copy(model: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    """The model itself when it already computes in `dtype`, else a deep copy cast to `dtype`
    (the caller's model is never changed)."""
    if next(model.parameters()).dtype == dtype:
        return model
    return copy.deepcopy(model).to(dtype)
