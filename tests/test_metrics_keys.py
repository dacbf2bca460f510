"""Average Key Distance on hand-picked keys."""

import math

import pytest
import torch

from metrics import average_key_distance, average_key_distance_per_layer


def test_akd_on_a_3_4_5_triangle():
    keys = torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, 4.0]])
    # pairs: |(0,0)-(3,0)| = 3, |(0,0)-(0,4)| = 4, |(3,0)-(0,4)| = 5  ->  (3 + 4 + 5) / 3 = 4
    assert average_key_distance(keys) == pytest.approx(4.0)


def test_akd_is_zero_for_identical_keys():
    assert average_key_distance(torch.ones(5, 8)) == 0.0


def test_akd_of_a_single_key_is_nan():
    assert math.isnan(average_key_distance(torch.ones(1, 8)))


def test_akd_accepts_bf16_and_reports_per_layer():
    keys = torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, 4.0]])
    per_layer = average_key_distance_per_layer({2: keys.bfloat16(), 7: 2 * keys})
    assert per_layer == pytest.approx({2: 4.0, 7: 8.0})  # doubling every key doubles AKD
