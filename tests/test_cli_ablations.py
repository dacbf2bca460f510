"""`ablations` (experiments/commands/ablations.py): each network is trained by `train medrek`
with the same data and budget as its reference and differs from it in exactly what its name
ablates; the command scores them all beside the unedited model on one batch of test edits."""

from __future__ import annotations

import json

import torch
from click.testing import CliRunner

from cli import main
from experiments.commands.ablations import ABLATIONS, changed_start, stale_reason
from experiments.commands.train import train_command
from retrieval.checkpoint import NETWORK_FILE, SHIPPED_DIR, TRAINING_LOG_FILE, load_network, save_network

BY_NAME = {ablation.name: ablation for ablation in ABLATIONS}


def train_settings(name: str) -> dict:
    """The `train medrek` parameters an ablation is trained with (parsed, not run)."""
    return train_command.make_context("train", ["medrek", "--name", name, *BY_NAME[name].train_options]).params


def differences(first: dict, second: dict) -> set[str]:
    return {key for key in first if first[key] != second[key]}


def test_each_prompt_path_ablation_changes_only_the_prompt_encoder():
    full = train_settings("full")
    assert full["encoder_tokens"] == 8 and full["align_statements"] > 0 and full["prompt_encoder"] is None
    # Same steps, rates, batches, seed, start and validation: only the architecture differs.
    assert differences(train_settings("no-encoder-slots"), full) == {"name", "encoder_tokens", "align_statements"}
    assert train_settings("no-encoder-slots")["encoder_tokens"] == 0
    no_attention = train_settings("no-attention")
    assert differences(no_attention, full) == {"name", "encoder_tokens", "align_statements", "prompt_encoder"}
    assert no_attention["prompt_encoder"] == "mlp"
    assert full["only"] == "prompts"


def test_the_retriever_ablation_changes_only_the_query_mlp():
    shared, separate = train_settings("retriever-shared"), train_settings("retriever-separate")
    assert differences(separate, shared) == {"name", "separate_query_mlp"}
    assert separate["separate_query_mlp"] and not shared["separate_query_mlp"]
    assert shared["only"] == "retriever"


def test_every_ablation_keeps_the_part_it_copies_frozen():
    # changed_start compares the copied part with its source: sound only if training never moves it.
    for ablation in ABLATIONS:
        trained = train_settings(ablation.name)["only"]
        assert {trained, train_settings(ablation.name)["init_part"]} == {"prompts", "retriever"}


def test_missing_networks_are_named_and_nothing_is_scored(tmp_path):
    result = CliRunner().invoke(main, ["ablations", "--networks", str(tmp_path), "--reports-dir", str(tmp_path / "r")])
    assert result.exit_code == 2
    assert all(ablation.name in result.output for ablation in ABLATIONS)
    assert "--train" in result.output
    assert not (tmp_path / "r").exists()


def save_started_from_source(folder, ablation) -> None:
    """A network that passes `ablations`' checks without training: its source checkpoint itself
    (so the part the definition copies is the source's), with a log naming the definition's run."""
    source = load_network(ablation.option("--init-from"), expect_llm=None)
    save_network(folder / NETWORK_FILE, source.network, llm=source.llm, encoder=source.encoder)
    write_log(folder, ablation.name, train_settings(ablation.name)["steps"])


def test_every_network_is_scored_beside_the_unedited_model_on_one_batch(tmp_path):
    for ablation in ABLATIONS:
        save_started_from_source(tmp_path / ablation.name, ablation)
    reports = tmp_path / "reports"
    result = CliRunner().invoke(main, ["ablations", "--benchmark", "counterfact", "--batch", "2", "--networks",
                                       str(tmp_path), "--reports-dir", str(reports), "--quiet"])
    assert result.exit_code == 0, result.output
    (report_file,) = reports.glob("*/report.json")
    runs = json.loads(report_file.read_text())["runs"]
    assert [run["editor"] for run in runs] == ["unedited", *(f"ablation:{a.name}" for a in ABLATIONS)]
    batches = {tuple(request["record_index"] for request in run["steps"][0]["requests"]) for run in runs}
    assert len(batches) == 1 and len(next(iter(batches))) == 2
    report_text = report_file.read_text()
    assert str(SHIPPED_DIR) not in report_text and "retrieval/checkpoints/medrek" in report_text


def write_log(folder, name: str, steps: int) -> None:
    """The part of `train --export`'s training log that `ablations` reads."""
    (folder / TRAINING_LOG_FILE).write_text(json.dumps({"stages": [{"run": f"ablation-{name}", "steps": steps}]}))


def test_a_network_trained_to_another_definition_is_refused_and_named(tmp_path):
    full = BY_NAME["full"]
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / NETWORK_FILE).write_bytes(b"never read: refused before loading")
    options = ["ablations", "--networks", str(tmp_path), "--ablation", "full", "--reports-dir", str(tmp_path / "r")]
    assert stale_reason(tmp_path / "full", full) == f"has no {TRAINING_LOG_FILE}, so what trained it is unknown"
    write_log(tmp_path / "full", "full", train_settings("full")["steps"] - 1)
    result = CliRunner().invoke(main, options)
    assert result.exit_code == 2, result.output
    assert "was trained for" in result.output and "--train" in result.output
    write_log(tmp_path / "full", "no-attention", train_settings("full")["steps"])
    assert "not ablation-full" in stale_reason(tmp_path / "full", full)
    write_log(tmp_path / "full", "full", train_settings("full")["steps"])
    assert stale_reason(tmp_path / "full", full) is None


def test_a_network_trained_from_an_earlier_version_of_its_source_is_refused(tmp_path):
    full = BY_NAME["full"]  # copies medrek_copy's retriever and trains the prompt path only
    source = load_network(full.option("--init-from"), expect_llm=None)
    network = source.network
    with torch.no_grad():
        next(iter(network.part_parameters("prompts").values())).view(-1)[0] += 0.5  # trained: may differ
    save_network(tmp_path / "full" / NETWORK_FILE, network, llm=source.llm, encoder=source.encoder)
    assert changed_start(tmp_path / "full", full) is None
    with torch.no_grad():
        next(iter(network.part_parameters("retriever").values())).view(-1)[0] += 0.5
    save_network(tmp_path / "full" / NETWORK_FILE, network, llm=source.llm, encoder=source.encoder)
    reason = changed_start(tmp_path / "full", full)
    assert reason is not None and "retriever part" in reason and "retrieval/checkpoints/medrek_copy" in reason
    write_log(tmp_path / "full", "full", train_settings("full")["steps"])  # the log alone would pass
    result = CliRunner().invoke(main, ["ablations", "--networks", str(tmp_path), "--ablation", "full",
                                       "--reports-dir", str(tmp_path / "r")])
    assert result.exit_code == 2 and "retriever part" in result.output and "--train" in result.output
    assert not (tmp_path / "r").exists()


def test_a_chosen_subset_is_all_that_is_needed_and_scored(tmp_path):
    save_started_from_source(tmp_path / "full", BY_NAME["full"])
    reports = tmp_path / "reports"
    args = ["ablations", "--benchmark", "counterfact", "--batch", "1", "--networks", str(tmp_path),
            "--reports-dir", str(reports), "--quiet"]
    missing = CliRunner().invoke(main, [*args, "--ablation", "full", "--ablation", "no-attention"])
    assert missing.exit_code == 2 and "no-attention" in missing.output and "full," not in missing.output
    result = CliRunner().invoke(main, [*args, "--ablation", "full"])
    assert result.exit_code == 0, result.output
    (report_file,) = reports.glob("*/report.json")
    assert [run["editor"] for run in json.loads(report_file.read_text())["runs"]] == ["unedited", "ablation:full"]


def test_training_to_a_definition_keeps_the_copied_part_of_its_source(tmp_path):
    # One real step of the no-encoder-slots definition: the copied retriever must come out of
    # training tensor for tensor, or changed_start would refuse every network it trains.
    ablation = BY_NAME["no-encoder-slots"]
    exported = tmp_path / "no-encoder-slots"
    result = CliRunner().invoke(main, ["train", "medrek", "--name", "ablation-no-encoder-slots", "--run-dir",
                                       str(tmp_path / "run"), *ablation.train_options, "--steps", "1", "--limit", "160",
                                       "--validate-every", "1", "--validation-size", "1", "--export", str(exported)])
    assert result.exit_code == 0, result.output
    assert "Warm start from" in result.output
    assert changed_start(exported, ablation) is None and stale_reason(exported, ablation) is not None
