"""Retrieval diagnostics for retrieval editors (MedREK Fig. 2c and Fig. 5).

They explain a retrieval editor's efficacy and locality: did an edit query fetch its own memory
entry, another one, or none, and did an unrelated query fetch anything at all?
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Hashable, Sequence

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class RetrievalRates:
    """Outcome shares. `correct + wrong + none = 1` over edit (efficacy/generality) queries;
    `unwanted` is over locality queries. A share is NaN when its query kind is absent."""

    correct: float
    wrong: float
    none: float
    unwanted: float
    edit_queries: int
    locality_queries: int


def retrieval_rates(
    retrieved: Sequence[Hashable | None], expected: Sequence[Hashable | None]
) -> RetrievalRates:
    """Classify each query by the memory id it retrieved (None: no retrieval) against the id it
    should retrieve (None: a locality query, which should retrieve nothing)."""
    if len(retrieved) != len(expected):
        raise ValueError(f"Got {len(retrieved)} retrieved ids but {len(expected)} expected ids.")
    edit = [(got, want) for got, want in zip(retrieved, expected) if want is not None]
    local = [got for got, want in zip(retrieved, expected) if want is None]

    def share(count: int, total: int) -> float:
        return count / total if total else math.nan

    return RetrievalRates(
        correct=share(sum(got == want for got, want in edit), len(edit)),
        wrong=share(sum(got is not None and got != want for got, want in edit), len(edit)),
        none=share(sum(got is None for got, _ in edit), len(edit)),
        unwanted=share(sum(got is not None for got in local), len(local)),
        edit_queries=len(edit),
        locality_queries=len(local),
    )


def high_similarity_share(embeddings: torch.Tensor, threshold: float = 0.6) -> float:
    """"High-Sim. Samples %" as a fraction: the share of rows of `embeddings` `[B, d]` whose
    cosine similarity with at least one *other* row exceeds `threshold` (strictly).

    A zero row has cosine 0 with everything. With B = 1 there are no pairs, so the share is 0.
    """
    if embeddings.dim() != 2 or embeddings.shape[0] == 0:
        raise ValueError(f"embeddings must be a non-empty [batch, width] matrix, got {tuple(embeddings.shape)}.")
    unit = F.normalize(embeddings.detach().double(), dim=-1)
    cosine = unit @ unit.T
    cosine.fill_diagonal_(-math.inf)  # a row's similarity with itself is not a pair
    return (cosine > threshold).any(dim=1).double().mean().item()


def similarity_ratio(sim_to_entry: torch.Tensor | float, sim_to_prototype: torch.Tensor | float) -> torch.Tensor:
    """MedREK Fig. 5's x value, `sim(q, entry) / sim(q, prototype)`, element-wise.

    For edit queries pass the similarity to the ground-truth entry (x < 1: wrong or no
    retrieval); for locality queries pass `max(sim to top-1 entry, sim to prototype)` (x = 1:
    nothing retrieved, x > 1: unwanted retrieval). The ratio keeps that reading only for a
    positive denominator, so it is NaN where `sim_to_prototype <= 0`.
    """
    entry = torch.as_tensor(sim_to_entry, dtype=torch.float64)
    prototype = torch.as_tensor(sim_to_prototype, dtype=torch.float64)
    ratio = entry / prototype
    return torch.where(prototype > 0, ratio, torch.full_like(ratio, math.nan))
