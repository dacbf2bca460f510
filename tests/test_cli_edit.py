"""`editscope edit` diagnoses key collisions on real CounterFact records before applying anything."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli import main
from experiments.collisions import same_subject_pairs
from data.benchmarks import load_benchmark

SHIPPED = Path(__file__).resolve().parents[1] / "data" / "files" / "counterfact" / "test.json.gz"


def lyon_records() -> list[dict]:
    """Two CounterFact test facts about Lyon plus one unrelated record."""
    records = json.loads(gzip.decompress(SHIPPED.read_bytes()))
    lyon = [r for r in records if r["subject"] == "Lyon"][:2]
    other = next(r for r in records if r["subject"] != "Lyon")
    return lyon + [other]


def test_same_subject_pairs_are_named(tmp_path):
    path = tmp_path / "edits.json"
    path.write_text(json.dumps(lyon_records()))
    pairs = same_subject_pairs(load_benchmark(str(path)))
    assert [(p.first, p.second) for p in pairs] == [(0, 1)]
    assert "Lyon" in pairs[0].sentence()


@pytest.mark.slow
def test_colliding_edits_are_refused_and_nothing_is_saved(tmp_path):
    path = tmp_path / "edits.json"
    path.write_text(json.dumps(lyon_records()))
    target = tmp_path / "edited"
    result = CliRunner().invoke(main, ["edit", "--requests", str(path), "--editor", "memit", "--save", str(target)])
    assert result.exit_code == 2
    assert "requests 0 and 1 (same subject 'Lyon')" in result.output
    assert "memit_merge" in result.output and "--force" in result.output
    assert not target.exists()


def test_existing_save_folder_is_refused_before_loading(tmp_path):
    path = tmp_path / "edits.json"
    path.write_text(json.dumps(lyon_records()))
    result = CliRunner().invoke(main, ["edit", "--requests", str(path), "--editor", "memit", "--save", str(tmp_path)])
    assert result.exit_code == 2
    assert "already exists" in result.output
