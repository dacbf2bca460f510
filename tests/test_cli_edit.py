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


def test_editor_names_are_case_insensitive_and_checked_before_loading(tmp_path, monkeypatch):
    from experiments.commands import edit

    def no_load(name):
        raise AssertionError("the model must not be loaded for a bad editor name")

    monkeypatch.setattr(edit, "load", no_load)
    path = tmp_path / "edits.json"
    path.write_text(json.dumps(lyon_records()))
    result = CliRunner().invoke(main, ["edit", "--requests", str(path), "--editor", "ROME",
                                       "--save", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert result.output.startswith("Error: Unknown editor 'ROME'; choose from memit")
    assert edit._known_editor(None, None, " MEMIT ") == "memit"


def test_a_prompt_longer_than_the_context_is_refused_naming_the_record(tmp_path, monkeypatch, tiny_tok):
    from tiny_models import tiny_model

    from experiments.commands import edit

    monkeypatch.setattr(edit, "load", lambda name: (tiny_model("llama", seed=0), tiny_tok))
    records = lyon_records()
    records[2]["prompt"] = "In a long story, " * 60 + records[2]["prompt"]
    path = tmp_path / "edits.json"
    path.write_text(json.dumps(records))
    result = CliRunner().invoke(main, ["edit", "--requests", str(path), "--editor", "medrek", "--quiet",
                                       "--save", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    (line,) = result.output.strip().splitlines()
    assert line.startswith("Error: Record 2 (counterfact): its prompt and target are ")
    assert "longer than the model's context of 128" in line
    assert not (tmp_path / "out").exists()
