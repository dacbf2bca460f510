"""The retrieval editors built by name carry that name into records and reports."""

from __future__ import annotations

import pytest

from retrieval.registry import EDITORS, make_editor


@pytest.mark.parametrize("name", sorted(EDITORS))
def test_shipped_editor_is_named_as_asked(name):
    # The shipped RECIPE network was exported from a run named "recipe-joint-plr"; reports
    # must still call it "recipe".
    assert make_editor(name.upper()).name == name
