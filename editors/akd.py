"""Average Key Distance (MEMIT-Merge §5) of any batch, at any layers.

`batch_keys` reads the MLP keys the key–value editors would write for each request (by default
at the bare edit prompt's key token, as the paper measures them; pass the editor's context
prefixes to get its context-averaged keys); `batch_akd` turns them into one AKD per layer with
`metrics.average_key_distance`.
"""

from __future__ import annotations

from typing import Sequence

import torch

from editors.keys import request_keys, request_sites
from data.requests import EditRequest, validate_requests
from metrics.keys import average_key_distance_per_layer


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


def batch_akd(
    model,
    tok,
    requests: Sequence[EditRequest],
    layers: Sequence[int],
    key_token: str = "subject_last",
    prefixes: Sequence[str] = (),
) -> dict[int, float]:
    """layer -> AKD (mean pairwise L2 distance of the batch's keys; NaN for a single request)."""
    return average_key_distance_per_layer(batch_keys(model, tok, requests, layers, key_token, prefixes))
