"""Locality agreement, per-group locality and the MedREK Average."""

import pytest

from metrics import average_score, locality_agreement, locality_by_group, mean_locality


def test_locality_is_one_when_predictions_are_unchanged():
    argmax = [[1, 2, 3], [4], [5, 6]]
    assert locality_agreement(argmax, argmax) == 1.0


def test_locality_is_mean_of_per_probe_agreement():
    edited = [[1, 2, 3, 4], [5, 6]]
    unedited = [[1, 2, 0, 4], [5, 0]]
    # probe 1: 3/4, probe 2: 1/2  ->  (0.75 + 0.5) / 2 = 0.625 (pooled would be 4/6)
    assert locality_agreement(edited, unedited) == pytest.approx(0.625)


def test_locality_by_group_and_mean():
    edited = {"td": [[1, 2]], "em": [[3, 4]], "ss": [[5]], "ts": [[6, 7, 8, 9]]}
    unedited = {"td": [[1, 2]], "em": [[3, 0]], "ss": [[0]], "ts": [[6, 7, 8, 0]]}
    by_group = locality_by_group(edited, unedited)
    assert by_group == pytest.approx({"td": 1.0, "em": 0.5, "ss": 0.0, "ts": 0.75})
    # (1 + 0.5 + 0 + 0.75) / 4 = 0.5625
    assert mean_locality(by_group) == pytest.approx(0.5625)


def test_locality_rejects_probes_of_different_length():
    with pytest.raises(ValueError, match="Probe 1"):
        locality_agreement([[1], [2, 3]], [[1], [2]])


def test_average_reproduces_medrek_table_2():
    # MEMIT, 100 edits, MedCF++: ((76.36 + 66.42)/2 + (87.91 + 76.74 + 87.26 + 83.52)/4) / 2
    #   = (71.39 + 83.8575) / 2 = 77.62375  (paper: 77.62)
    assert average_score(76.36, 66.42, [87.91, 76.74, 87.26, 83.52]) == pytest.approx(77.62375)
    # MedREK, 100 edits, MedVersa (one locality number): ((74.49 + 70.46)/2 + 99.45) / 2
    #   = (72.475 + 99.45) / 2 = 85.9625  (paper: 85.96)
    assert average_score(74.49, 70.46, [99.45]) == pytest.approx(85.9625)
