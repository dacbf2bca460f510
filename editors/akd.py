"""The MLP keys of any batch, at any layers: what Average Key Distance (MEMIT-Merge App. B,
eq. 4; `metrics.keys.average_key_distance_per_layer`) and the collision check of `edit` read.

`batch_keys` reads the keys the key–value editors would write for each request (by default at
the bare edit prompt's key token, as the paper measures them; pass the editor's context
prefixes to get its context-averaged keys).
"""

from __future__ import annotations

from typing import Sequence

import torch

from editors.keys import request_keys, request_sites
from data.requests import EditRequest, validate_requests


def batch_keys(
    model,
    tok,
    requests: Sequence[EditRequest],
    layers: Sequence[int],
    key_token: str = "subject_last",
    prefixes: Sequence[str] = (),
) -> dict[int, torch.Tensor]:
    """layer -> [B, d_ff] keys of the batch (rows in request order)."""
    validate_requests(requests)
    sites = request_sites(tok, requests, key_token, prefixes)
    keys, _ = request_keys(model, sites, sorted(set(layers)))
    return keys
