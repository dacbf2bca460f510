"""Retrieval diagnostics on small constructed cases."""

import math

import pytest
import torch

from metrics import high_similarity_share, retrieval_rates, similarity_ratio


def test_retrieval_rates_on_constructed_queries():
    expected = [1, 1, 2, 2, 3, None, None, None, None]
    retrieved = [1, 2, 2, None, 3, None, 5, None, None]
    rates = retrieval_rates(retrieved, expected)
    # edit queries: (1,1) ok, (2,1) wrong, (2,2) ok, (None,2) none, (3,3) ok  ->  3/5, 1/5, 1/5
    assert (rates.correct, rates.wrong, rates.none) == pytest.approx((0.6, 0.2, 0.2))
    # locality queries: one of four retrieved something  ->  1/4
    assert rates.unwanted == pytest.approx(0.25)
    assert (rates.edit_queries, rates.locality_queries) == (5, 4)


def test_retrieval_rates_are_nan_for_an_absent_query_kind():
    rates = retrieval_rates([None, 7], [None, None])
    assert math.isnan(rates.correct) and math.isnan(rates.wrong) and math.isnan(rates.none)
    assert rates.unwanted == 0.5


def test_high_similarity_share_on_constructed_vectors():
    embeddings = torch.tensor([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0], [-1.0, 0.0]])
    # cos(a, b) = 1 / sqrt(1.01) = 0.995 > 0.6; every other pair has cos <= 0.0995
    # -> a and b are high-similarity samples: 2 of 4
    assert high_similarity_share(embeddings) == 0.5
    assert high_similarity_share(embeddings, threshold=0.999) == 0.0
    assert high_similarity_share(torch.ones(1, 3)) == 0.0  # a lone sample has no pair


def test_similarity_ratio():
    ratio = similarity_ratio(torch.tensor([0.8, 0.3, 0.5]), torch.tensor([0.4, 0.6, -0.2]))
    # 0.8/0.4 = 2 (correct retrieval side), 0.3/0.6 = 0.5, negative prototype similarity -> NaN
    assert ratio[:2].tolist() == pytest.approx([2.0, 0.5])
    assert math.isnan(ratio[2])
    assert similarity_ratio(0.9, 0.9).item() == 1.0  # locality query that retrieved nothing
