"""Corpus perplexity and the AKD-vs-efficacy rank correlation helper."""

import math
import warnings

import pytest

from metrics import perplexity, spearman_correlation


def test_perplexity_pools_tokens():
    # NLLs 1, 2 and 3 over three tokens: mean 2  ->  e^2 (per-text mean would be (e^1.5 + e^3)/2)
    assert perplexity([[-1.0, -2.0], [-3.0]]) == pytest.approx(math.exp(2.0))


def test_perplexity_rejects_no_tokens():
    with pytest.raises(ValueError):
        perplexity([[], []])


def test_spearman_by_hand():
    # ranks of y: 1, 3, 2; d = 0, -1, 1; rho = 1 - 6 * 2 / (3 * (9 - 1)) = 0.5
    result = spearman_correlation([1.0, 2.0, 3.0], [1.0, 3.0, 2.0])
    assert result.rho == pytest.approx(0.5)
    assert result.n == 3 and result.reason == ""
    rho, p, _, _ = spearman_correlation([1.0, 2.0, 3.0, 4.0], [40.0, 30.0, 20.0, 10.0])
    assert rho == pytest.approx(-1.0)


def test_spearman_constant_input_is_nan_with_reason_and_no_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = spearman_correlation([0.0, 0.0, 0.0], [0.3, 0.5, 0.9])
    assert math.isnan(result.rho) and math.isnan(result.p)
    assert "x is constant" in result.reason


def test_spearman_drops_nan_pairs():
    # AKD is NaN for a single-edit batch; that pair is dropped and too few remain
    result = spearman_correlation([math.nan, 1.0, 2.0], [0.1, 0.2, 0.3])
    assert result.n == 2 and math.isnan(result.rho)
    assert "2 finite pairs" in result.reason
