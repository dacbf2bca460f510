"""stress, akd and bench end to end on a tiny random model (the unedited reference only, so no
editing cost): what runs, in which order, with which labels and analyses, and what is written."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner
from rich.console import Console
from tiny_models import tiny_model

from cli import main
from data.batches import same_and_distinct_subject_sets
from data.benchmarks import load_benchmark
from data.relation_names import counterfact_relation_names
from data.relations import infer_relations
from editors.hparams import load_hparams
from experiments.commands import akd, bench, stress
from experiments.commands.akd import APP_C_TEMPLATES, composition_batches, high_similarity_entries
from experiments.commands.sweep import Job, line_up
from experiments.edit_sets import edit_set_of
from experiments.identity import IdentityEditor
from experiments.report import DISTINCT_SUBJECT, RENDERED_FILES, SAME_SUBJECT

# One process: the tiny model below replaces `load` in this process only, and spawned workers
# would load the named model itself.
CHEAP = ["--fluency-prompts", "0", "--perplexity-tokens", "0", "--workers", "1"]


@pytest.fixture(scope="module")
def counterfact():
    train, test = load_benchmark("counterfact", "train"), load_benchmark("counterfact", "test")
    return test, infer_relations(train + test)


@pytest.fixture
def tiny(monkeypatch, tiny_tok, tmp_cache):
    """Every command loads a 9-layer tiny llama (deep enough for the llama hparams' layers)."""
    model = tiny_model("llama", seed=2, layers=9)
    for module in (stress, akd, bench):
        monkeypatch.setattr(module, "load", lambda name: (model, tiny_tok))
    return model, tiny_tok


def report_of(args: list[str], tmp_path) -> dict:
    """Run a command with --json; check it wrote one complete report folder; return the JSON."""
    reports = tmp_path / "reports"
    result = CliRunner().invoke(main, [*args, *CHEAP, "--json", "--reports-dir", str(reports)])
    assert result.exit_code == 0, result.output
    (run_dir,) = reports.iterdir()
    assert sorted(path.name for path in run_dir.iterdir()) == sorted(("report.json", *RENDERED_FILES))
    report = json.loads(result.output)
    assert report == json.loads((run_dir / "report.json").read_text())
    return report


def memit_last_layer() -> int:
    """l* of MEMIT's llama defaults (the tiny model is a llama with enough layers)."""
    return load_hparams("memit", "llama").last_layer


def test_same_subject_pairs_labelled_batches_and_adds_natural_groups(tiny, tmp_path):
    report = report_of(["stress", "same-subject", "--editors", "unedited", "--batch-sizes", "3,1",
                        "--natural", "4"], tmp_path)
    assert report["command"] == "stress same-subject"
    runs, analyses = report["runs"], report["analyses"]
    assert analyses["run_labels"] == [DISTINCT_SUBJECT, SAME_SUBJECT, DISTINCT_SUBJECT, SAME_SUBJECT,
                                      "natural-groups"]
    assert [run["batch_size"] for run in runs] == [1, 1, 3, 3, 4]
    # The twins hold the same records; the same-subject one renamed them.
    assert runs[2]["record_indices"] == runs[3]["record_indices"]
    assert {entry["layer"] for entry in analyses["akd"]} == {memit_last_layer()}
    assert [entry["akd"] is None for entry in analyses["akd"]] == [True, True, False, False, False]


def test_key_token_override_reaches_key_value_editors_only(tiny):
    model, _ = tiny
    lineup = line_up(("memit", "ft_l"), model, Console(quiet=True), {"key_token": "prompt_last"})
    assert list(lineup) == ["unedited", "memit", "ft_l"]
    assert lineup["memit"].hparams.key_token == "prompt_last"
    assert not hasattr(lineup["ft_l"].hparams, "key_token")


def test_batch_sweep_edits_the_same_draw_at_every_size(tiny, tmp_path):
    report = report_of(["stress", "batch-sweep", "--benchmark", "medcf", "--batch-sizes", "2,1",
                        "--editors", "unedited"], tmp_path)
    runs = report["runs"]
    assert [(run["batch_size"], len(run["steps"])) for run in runs] == [(1, 2), (2, 1)]
    assert runs[0]["record_indices"] == runs[1]["record_indices"]


def test_sequential_scores_everything_edited_so_far(tiny, tmp_path):
    report = report_of(["stress", "sequential", "--steps", "2", "--batch", "2", "--editors", "unedited"],
                       tmp_path)
    (run,) = report["runs"]
    assert run["mode"] == "sequential" and [step["aggregate"]["requests"] for step in run["steps"]] == [2, 4]


def test_seeds_draw_one_batch_each_and_report_the_spread(tiny, tmp_path):
    report = report_of(["stress", "sequential", "--steps", "1", "--batch", "3", "--editors", "unedited",
                        "--seeds", "0,1"], tmp_path)
    first, second = report["runs"]
    assert (first["seed"], second["seed"]) == (0, 1) and report["arguments"]["seeds"] == [0, 1]
    assert first["record_indices"] != second["record_indices"]
    (run_dir,) = (tmp_path / "reports").iterdir()
    assert "## Across seeds" in (run_dir / "report.md").read_text()
    refused = CliRunner().invoke(main, ["compare", "--seeds", "0,x", *CHEAP])
    assert refused.exit_code == 2 and "--seeds takes comma-separated whole numbers" in refused.output


def test_bench_medical_runs_benchmark_by_benchmark(tiny, tmp_path):
    report = report_of(["bench", "medical", "--benchmark", "medcfpp,medcf", "--batch", "1,2",
                        "--edits", "2", "--editors", "unedited"], tmp_path)
    assert [(run["dataset"]["benchmark"], run["batch_size"]) for run in report["runs"]] == [
        ("medcfpp", 1), ("medcfpp", 2), ("medcf", 1), ("medcf", 2)]
    assert set(report["runs"][0]["aggregate"]["locality"]) == {"td", "em", "ss", "ts"}


def test_akd_reports_layers_correlations_and_batch_compositions(tiny, tmp_path):
    report = report_of(["akd", "--editors", "unedited", "--batch", "3", "--layers", "1,4"], tmp_path)
    analyses = report["analyses"]
    labels = ["0% shared subject", "25% shared subject", "50% shared subject", "75% shared subject",
              "100% shared subject", "template 1, same subject", "template 1, distinct subjects",
              "template 2, same subject", "template 2, distinct subjects"]
    assert analyses["run_labels"] == labels
    assert [batch["label"] for batch in analyses["akd_batches"]] == labels
    layers = (1, 4, memit_last_layer())  # the asked layers and MEMIT's last one
    assert {entry["layer"] for entry in analyses["akd"]} == set(layers)
    akd_at = {(entry["run_index"], entry["layer"]): entry["akd"] for entry in analyses["akd"]}
    # "{subject}'s ..." puts one shared subject first, so every key at its last token coincides.
    assert [akd_at[(5, layer)] for layer in layers] == [0.0, 0.0, 0.0]
    assert all(akd_at[(6, layer)] > 0 for layer in layers)
    assert [entry["y"] for entry in analyses["correlations"]] == [
        "unedited Eff (token acc.)", "unedited Eff score"]
    assert {entry["x"] for entry in analyses["correlations"]} == {f"AKD at layer {memit_last_layer()}"}
    assert "high_similarity_samples" not in analyses  # no retrieval editor ran


def test_composition_batches_mix_shared_subjects_and_apply_both_templates(counterfact):
    test, relations = counterfact
    pair = same_and_distinct_subject_sets(test, 4, seed=3, relations=relations)
    names = counterfact_relation_names()
    batches = composition_batches(pair, names)
    assert [batch.shared_subject_share for batch in batches] == [0, 0.25, 0.5, 0.75, 1, 1, 0, 1, 0]
    mixed = batches[2].requests
    assert [request.subject for request in mixed[:2]] == ["John Smith"] * 2
    assert mixed[2:] == pair.distinct_subject[2:]
    first = batches[5].requests[0]
    phrase = names.phrase(pair.relations[0])
    assert first.prompt == f"John Smith's {phrase} is"
    assert first.rephrase_prompts == (f"The name of the {phrase} of John Smith is",)
    assert first.target_new == pair.same_subject[0].target_new
    assert batches[8].requests[0].prompt == APP_C_TEMPLATES[1].format(
        subject=pair.distinct_subject[0].subject, relation=phrase)


def test_every_inferred_counterfact_relation_has_a_phrase(counterfact):
    _, relations = counterfact
    names = counterfact_relation_names()
    assert set(names.phrases) == set(relations.relation_names)


class FakeRetrievalEditor(IdentityEditor):
    """A retrieval editor's `KnowledgeKeys` capability: prompts about John Smith land on one
    direction, every other prompt on another."""

    name = "recipe"

    def knowledge_keys(self, requests):
        return torch.tensor([[1.0, 0.0] if "John Smith" in r.prompt else [0.0, 1.0] for r in requests])


def test_high_similarity_samples_come_from_editors_with_knowledge_keys_only(counterfact):
    test, relations = counterfact
    pair = same_and_distinct_subject_sets(test, 4, seed=3, relations=relations)
    mixed = edit_set_of(pair.same_subject[:2] + pair.distinct_subject[2:3], "counterfact")
    jobs = [Job("unedited", mixed, 3), Job("recipe", mixed, 3), Job("memit", mixed, 3)]
    lineup = {"unedited": IdentityEditor(), "recipe": FakeRetrievalEditor(), "memit": IdentityEditor()}
    entries = high_similarity_entries(jobs, lineup)
    assert [(entry["run_index"], entry["editor"]) for entry in entries] == [(1, "recipe")]
    assert entries[0]["high_sim_samples"] == pytest.approx(2 / 3)  # the two John Smith edits pair up


def test_same_subject_sets_can_come_from_the_train_split():
    train_prompts = {r.prompt for r in load_benchmark("counterfact", "train")}
    edit_sets = dict(stress.subject_edit_sets([3], 6, seed=0, split="train"))
    assert {r.prompt for r in edit_sets[DISTINCT_SUBJECT].requests} <= train_prompts
    assert {r.prompt for r in edit_sets["natural-groups"].requests} <= train_prompts
