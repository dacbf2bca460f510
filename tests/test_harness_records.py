"""Result records: reproducible to the byte (timings aside), JSON round trip, shared baseline."""

from __future__ import annotations

import json

import pytest
from rich.console import Console

import experiments.baseline
from experiments.edit_sets import draw_edits
from experiments.harness import run_batch, run_sequential
from experiments.identity import IdentityEditor
from experiments.records import RunRecord, Settings, read_record, write_record
from experiments.tables import comparison_table, sequential_table

SMALL = Settings(fluency_prompts=2, fluency_new_tokens=3, perplexity_tokens=40)


@pytest.fixture(scope="module")
def edits():
    return draw_edits("medcfpp", 4, seed=3)


def test_same_seed_gives_identical_records_apart_from_timings(tiny_llama, tmp_path, edits):
    model, tok = tiny_llama
    first = run_batch(IdentityEditor(), model, tok, edits, batch_size=2, settings=SMALL,
                      baseline_dir=tmp_path)
    again = draw_edits("medcfpp", 4, seed=3)  # drawn anew, as a second process would
    second = run_batch(IdentityEditor(), model, tok, again, batch_size=2, settings=SMALL,
                       baseline_dir=tmp_path)
    assert first.to_json(include_timings=False) == second.to_json(include_timings=False)
    assert "timings" in first.to_dict() and "timings" not in first.to_dict(include_timings=False)


def test_record_names_what_was_run(tiny_llama, tmp_path, edits):
    model, tok = tiny_llama
    record = run_batch(IdentityEditor(), model, tok, edits, settings=SMALL, baseline_dir=tmp_path)
    assert record.editor == "unedited" and record.hparams is None and record.seed == 3
    assert record.dataset.benchmark == "medcfpp" and record.dataset.split == "test"
    assert record.dataset.file == "shipped:medcfpp/test.json.gz"
    assert len(record.dataset.sha256) == 64
    assert record.record_indices == tuple(r.metadata["index"] for r in edits.requests)
    assert set(record.versions) == {"python", "torch", "transformers", "editscope"}
    assert record.settings == SMALL
    step = record.steps[0]
    assert step.validation.ceiling_sentence.startswith("Best achievable on this batch of 4")
    assert set(record.aggregate.locality) == {"td", "em", "ss", "ts"}
    assert record.aggregate.health.fluency_texts == 2
    assert record.perplexity_before == record.aggregate.health.perplexity_after  # nothing edited


def test_records_round_trip_through_json(tiny_llama, tmp_path, edits):
    model, tok = tiny_llama
    record = run_sequential(IdentityEditor(), model, tok, edits, batch_size=2, settings=SMALL,
                            baseline_dir=tmp_path)
    assert RunRecord.from_dict(json.loads(record.to_json())) == record
    write_record(tmp_path / "run.json", record)
    assert read_record(tmp_path / "run.json") == record


def test_unedited_predictions_are_cached_once_and_shared(tiny_llama, tmp_path, edits, monkeypatch):
    model, tok = tiny_llama
    run_batch(IdentityEditor(), model, tok, edits, settings=SMALL, baseline_dir=tmp_path)
    (model_dir,) = tmp_path.iterdir()  # one folder, named by the model fingerprint
    cached = sorted(path.name.split("-")[0] for path in model_dir.glob("*.json"))  # beside their seals
    assert cached == ["locality", "perplexity"]
    payload = json.loads(next(model_dir.glob("locality-*.json")).read_text())
    assert payload["about"]["record_indices"] == list(edits.record_indices)

    def must_not_run(*args, **kwargs):
        raise AssertionError("the unedited baseline was recomputed")

    monkeypatch.setattr(experiments.baseline, "locality_predictions", must_not_run)
    monkeypatch.setattr(experiments.baseline, "heldout_losses", must_not_run)
    # Another mode (and any other editor) on the same records reuses the cached baseline.
    run_sequential(IdentityEditor(), model, tok, edits, batch_size=2, settings=SMALL,
                   baseline_dir=tmp_path)


def test_a_corrupt_baseline_file_is_recomputed(tiny_llama, tmp_path, edits):
    model, tok = tiny_llama
    first = run_batch(IdentityEditor(), model, tok, edits, settings=SMALL, baseline_dir=tmp_path)
    for path in next(tmp_path.iterdir()).iterdir():
        path.write_text("{ not json")
    second = run_batch(IdentityEditor(), model, tok, edits, settings=SMALL, baseline_dir=tmp_path)
    assert first.to_json(include_timings=False) == second.to_json(include_timings=False)


def test_tables_render_from_records_alone(tiny_llama, tmp_path, edits):
    model, tok = tiny_llama
    record = run_sequential(IdentityEditor(), model, tok, edits, batch_size=2, settings=SMALL,
                            baseline_dir=tmp_path)
    reread = read_record_via_json(record)  # groups come back in sorted order from JSON
    screen = Console(width=200, record=True)
    screen.print(comparison_table([reread], "comparison"))
    screen.print(sequential_table(reread, "sequential"))
    text = screen.export_text()
    header = next(line for line in text.splitlines() if "Editor" in line)
    assert [word for word in header.split() if word != "┃"] == [
        "Editor", "Eff", "Gen", "TD", "EM", "SS", "TS", "Flu", "Avg", "ΔPPL", "%", "Edit", "s", "Infer", "×"]
    steps = [line.split() for line in text.splitlines() if line.split()[:2] in (["1", "2"], ["2", "4"])]
    assert [row[:2] for row in steps] == [["1", "2"], ["2", "4"]]  # step, requests edited so far
    assert all(row[5] == "100.0" for row in steps)  # locality of the unedited model


def read_record_via_json(record):
    return RunRecord.from_dict(json.loads(record.to_json()))
