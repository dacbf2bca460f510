"""`ask` on the embedded model: edits saved by `edit --save` (MEMIT weights, a MedREK memory) change
the answer to the edited question and leave an unrelated question's answer alone."""

from __future__ import annotations

import copy
import gzip
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli import main
from experiments import saved_edits
from experiments.commands import ask, edit
from lm.loading import load

SHIPPED = Path(__file__).resolve().parents[1] / "data" / "files" / "counterfact" / "test.json.gz"
UNRELATED = "The capital of France is"


@pytest.fixture
def edit_file(tmp_path) -> tuple[Path, dict]:
    """CounterFact test record 0: Danielle Darrieux's mother tongue, French → English."""
    record = json.loads(gzip.decompress(SHIPPED.read_bytes()))[0]
    path = tmp_path / "edit.json"
    path.write_text(json.dumps([record]))
    return path, record


@pytest.fixture
def embedded(monkeypatch, default_model):
    """`edit` edits (and never undoes) a copy of the session's embedded model; `ask` reads the
    unedited model from the session and an edited model folder from disk."""
    monkeypatch.setattr(edit, "load", lambda name: copy.deepcopy(default_model))
    monkeypatch.setattr(saved_edits, "load", lambda name: default_model if name == "default" else load(name))


def ask_json(*args: str) -> list[dict]:
    result = CliRunner().invoke(main, ["ask", *args, "--max-new-tokens", "6", "--samples", "1", "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


@pytest.mark.slow
@pytest.mark.parametrize("editor", ["memit", "medrek_copy"])
def test_ask_shows_the_saved_edit_and_leaves_an_unrelated_answer(editor, edit_file, embedded, tmp_path):
    path, record = edit_file
    saved = tmp_path / "saved"
    result = CliRunner().invoke(main, ["edit", "--requests", str(path), "--editor", editor, "--save", str(saved),
                                       "--quiet"])
    assert result.exit_code == 0, result.output
    edited, unrelated = ask_json("--edits", str(saved), "--prompt", record["prompt"], "--prompt", UNRELATED)

    assert edited["edit"]["target_new"] == record["target_new"]  # retrieved (medrek_copy) or asked verbatim
    assert edited["unedited"]["greedy"].strip().startswith(record["ground_truth"])
    assert edited["edited"]["greedy"].strip().startswith(record["target_new"])
    assert edited["edited"]["target_probability"] > 0.5 > edited["unedited"]["target_probability"]

    assert unrelated["edit"] is None and unrelated["target"] is None
    assert unrelated["edited"]["greedy"] == unrelated["unedited"]["greedy"]
    assert unrelated["unedited"]["greedy"].strip().startswith("Paris")


def test_ask_needs_edits_or_an_editor_with_requests(tmp_path):
    for args in ([], ["--requests", str(tmp_path / "r.json")], ["--edits", str(tmp_path), "--requests", "r.json"]):
        result = CliRunner().invoke(main, ["ask", *args, "--prompt", "Hi"])
        assert result.exit_code == 2 and result.output.startswith("Error: ")


@pytest.mark.slow
def test_ask_edits_in_memory_and_answers_interactively(edit_file, monkeypatch, default_model):
    path, record = edit_file
    monkeypatch.setattr(ask, "load", lambda name: default_model)  # medrek leaves the weights alone
    result = CliRunner().invoke(main, ["ask", "--editor", "medrek", "--requests", str(path), "--samples", "0",
                                       "--max-new-tokens", "4"], input=f"{record['prompt']}\n\n")
    assert result.exit_code == 0, result.output
    assert "Question (empty to stop)" in result.output and "edited (medrek)" in result.output
    shown = " ".join(result.output.split())  # Rich wraps the caption to the table's width
    assert f"Edit reached: {record['prompt']!r} → {record['target_new']!r}" in shown
