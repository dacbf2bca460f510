"""report.json is checked against the record dataclasses' type annotations when read: every
field of a run mutated to a wrong type makes `report` exit 2 with one sentence naming the
field, and render nothing. The fields are enumerated from a real record, so a field added to
the records later is covered without touching this test."""

from __future__ import annotations

import json

from click.testing import CliRunner
from test_report_fixtures import retrieval_summary, run

from cli import main
from experiments.report import Report

REPORT = Report("compare", {}, (run("memit", 2), run("recipe", 2, retrieval=retrieval_summary())),
                created="2026-01-01T00:00:00+00:00")
FREE_FORM = ("hparams",)  # dict[str, Any]: its values may be anything


def paths(value, prefix=()):
    """Every (path, value) below `value`, containers included, outside free-form fields."""
    children = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in children:
        yield (*prefix, key), child
        if not (len(prefix) == 0 and key in FREE_FORM):
            yield from paths(child, (*prefix, key))


def wrong_values(value):
    """Values of a JSON type that no annotation of `value`'s field allows."""
    wrong = ["x"] if isinstance(value, list) else [[]]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        wrong.append(True)  # a JSON boolean is no number, although Python's bool is an int
    return wrong


RUN_JSON = json.loads(REPORT.to_json())["runs"]
MUTATIONS = [(number, path, bad) for number, record in enumerate(RUN_JSON)
             for path, value in paths(record) for bad in wrong_values(value)]


def test_every_mutation_is_covered():
    fields = {path[0] for _, path, _ in MUTATIONS}
    assert {"aggregate", "steps", "timings", "settings", "model", "dataset", "versions"} <= fields
    assert any(path[-1] == "retrieval" for _, path, _ in MUTATIONS)  # nested optional dataclass
    assert len(MUTATIONS) > 150


def test_every_field_of_a_run_with_a_wrong_type_exits_2(tmp_path):
    runner = CliRunner()
    failures = []
    for number, path, bad in MUTATIONS:
        document = json.loads(REPORT.to_json())
        parent = document["runs"][number]
        for key in path[:-1]:
            parent = parent[key]
        parent[path[-1]] = bad
        (tmp_path / "report.json").write_text(json.dumps(document))
        result = runner.invoke(main, ["report", str(tmp_path)])
        lines = result.output.strip().splitlines()
        if result.exit_code != 2 or len(lines) != 1 or not lines[0].startswith("Error: "):
            failures.append((number, path, bad, result.exit_code, result.output[-200:]))
    assert failures == []
    assert [path.name for path in tmp_path.iterdir()] == ["report.json"]  # nothing rendered


def test_the_sentence_names_the_field_and_the_type(tmp_path):
    document = json.loads(REPORT.to_json())
    document["runs"][1]["aggregate"]["health"]["retrieval"]["correct"] = "high"
    (tmp_path / "report.json").write_text(json.dumps(document))
    result = CliRunner().invoke(main, ["report", str(tmp_path)])
    assert result.exit_code == 2
    assert "in run 2, record.aggregate.health.retrieval.correct must be a number, not \"high\"." in result.output
