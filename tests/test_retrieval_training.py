"""Retrieval training on tiny random models: losses fall, resuming is exact, features cache."""

import dataclasses
import math

import pytest
import torch
from click.testing import CliRunner
from test_retrieval_support import requests
from test_retrieval_support import encoder, llm, tok  # noqa: F401 (fixtures)

from cli import main
from experiments.commands.train import harness_evaluation
from retrieval.checkpoint import CheckpointError, load_network
from retrieval.features import FeatureTable
from retrieval.medrek import new_medrek
from retrieval.recipe import new_recipe
from retrieval.training import BEST_FILE, STATE_FILE, Trainer, TrainingConfig
from retrieval.training_data import TrainingData, without_confounded_probes


@pytest.fixture(scope="module")
def data():
    edits = tuple(requests())
    return TrainingData(train={"tiny": edits}, validation={"tiny": edits[:3]})


@pytest.fixture(scope="module")
def features(encoder, data):
    return FeatureTable.build(encoder, data.texts())


def trainer(make, encoder, llm, tok, data, features, run_dir, **overrides):
    settings = dict(steps=4, learning_rate=1e-2, prompt_learning_rate=1e-2, edit_batch_size=6, retrieval_batch_size=6,
                    validate_every=3, checkpoint_every=2, llm_bf16=False)
    config = TrainingConfig(**{**settings, **overrides})
    extra = {"heads": 4} if make is new_medrek else {}
    network = make(encoder, llm, width=32, **extra)
    identity = dataclasses.replace(encoder.identity(), fingerprint="tiny-llm", width=llm.config.hidden_size)
    return Trainer(network, encoder, llm, tok, data.train, data.validation, features, config, run_dir, identity,
                   harness_evaluation(llm, tok))


@pytest.mark.parametrize("make", [new_recipe, new_medrek])
def test_a_few_steps_lower_the_loss(make, encoder, llm, tok, data, features, tmp_path):
    # One fixed batch (the whole tiny set), so the loss can only move because of training.
    run = trainer(make, encoder, llm, tok, data, features, tmp_path, steps=12)
    first = run.train_step()
    for _ in range(10):
        last = run.train_step()
    for name in ("loss", "reliability", "generality"):
        assert last[name] < first[name], name
    assert set(first) >= {"reliability", "generality", "locality_kl", "neighbour_nce", "sentinel_nce"}


def test_resuming_continues_from_the_saved_step_with_identical_state(encoder, llm, tok, data, features, tmp_path):
    straight = trainer(new_medrek, encoder, llm, tok, data, features, tmp_path / "straight")
    straight.run()

    interrupted = trainer(new_medrek, encoder, llm, tok, data, features, tmp_path / "resumed", steps=2)
    interrupted.run()
    resumed = trainer(new_medrek, encoder, llm, tok, data, features, tmp_path / "resumed")
    assert resumed.step == 2
    assert torch.equal(resumed.generator.get_state(), interrupted.generator.get_state())
    resumed.run()

    assert resumed.step == straight.step == 4
    for name, value in straight.network.state_dict().items():
        assert torch.equal(resumed.network.state_dict()[name], value), name
    for index, slots in straight.optimizer.state_dict()["state"].items():
        for slot, value in slots.items():
            assert torch.equal(resumed.optimizer.state_dict()["state"][index][slot], value)
    assert resumed.history["loss"] == straight.history["loss"]
    # The interrupted run also validated at its own last step (2); the rest must agree.
    def scores(run):
        return {v["step"]: v["score"] for v in run.history["validation"]}
    assert scores(straight) == {step: score for step, score in scores(resumed).items() if step != 2}
    assert torch.equal(resumed.generator.get_state(), straight.generator.get_state())


def test_resuming_with_other_settings_is_refused(encoder, llm, tok, data, features, tmp_path):
    trainer(new_recipe, encoder, llm, tok, data, features, tmp_path, steps=2).run()
    with pytest.raises(CheckpointError, match="only `steps` may change"):
        trainer(new_recipe, encoder, llm, tok, data, features, tmp_path, learning_rate=0.5)


def test_validation_keeps_the_best_network(encoder, llm, tok, data, features, tmp_path):
    run = trainer(new_recipe, encoder, llm, tok, data, features, tmp_path, steps=3)
    best = run.run()
    assert best["step"] == 3 and (tmp_path / BEST_FILE).is_file() and (tmp_path / STATE_FILE).is_file()
    evaluation = run.history["validation"][0]["tiny"]
    assert set(evaluation) >= {"efficacy", "generality", "locality", "retrieval"}
    assert 0 <= evaluation["efficacy"] <= 1 and set(evaluation["retrieval"]) >= {"correct", "unwanted"}
    loaded = load_network(tmp_path / BEST_FILE, expect_llm=None)
    assert loaded.network.config == run.network.config


def test_retriever_only_training_leaves_the_prompt_encoder_alone(encoder, llm, tok, data, features, tmp_path):
    run = trainer(new_medrek, encoder, llm, tok, data, features, tmp_path, train_prompts=False)
    before = {name: value.clone() for name, value in run.network.state_dict().items()}
    run.run()
    after = run.network.state_dict()
    assert torch.equal(after["prompt_encoder.query_position"], before["prompt_encoder.query_position"])
    assert not torch.equal(after["key_mlp.project.weight"], before["key_mlp.project.weight"])
    assert "retrieval" in run.history["validation"][0]["tiny"]


def test_feature_table_is_cached_and_reread(encoder, data, tmp_path):
    built = FeatureTable.build(encoder, data.texts(), cache_dir=tmp_path)
    assert len(list(tmp_path.glob("features-*.safetensors"))) == 1
    again = FeatureTable.build(encoder, data.texts(), cache_dir=tmp_path)
    assert torch.equal(built.features, again.features)
    text = requests()[0].prompt
    assert torch.allclose(built([text]), encoder.encode([text]).half().float())
    with pytest.raises(KeyError, match="No encoder features"):
        built(["never encoded"])


def test_confounded_locality_probes_are_dropped():
    edits = requests()
    stolen = dataclasses.replace(edits[1].locality["default"][0], prompt=edits[0].prompt)
    probe_owner = dataclasses.replace(edits[1], locality={"default": (stolen,)})
    cleaned = without_confounded_probes([edits[0], probe_owner])
    assert cleaned[1].locality == {}
    assert cleaned[0].locality == edits[0].locality


def test_edit_losses_only_every_kth_step(encoder, llm, tok, data, features, tmp_path):
    run = trainer(new_recipe, encoder, llm, tok, data, features, tmp_path, steps=4, edit_every=2)
    run.run()
    with_edits = [row["step"] for row in run.history["loss"] if "reliability" in row]
    assert with_edits == [1, 3]
    assert all("neighbour_nce" in row for row in run.history["loss"])


def test_export_over_the_checkpoint_a_run_started_from_keeps_its_stages_first(
    encoder, llm, tok, data, features, tmp_path
):
    import json

    from experiments.commands.train import export

    trainer(new_recipe, encoder, llm, tok, data, features, tmp_path / "first", steps=2).run()
    shipped = tmp_path / "shipped"
    export(tmp_path / "first", shipped)
    trainer(new_recipe, encoder, llm, tok, data, features, tmp_path / "second", steps=3).run()
    export(tmp_path / "second", shipped, earlier_logs=(shipped / "training-log.json",))
    stages = json.loads((shipped / "training-log.json").read_text())["stages"]
    assert [(stage["run"], stage["steps"]) for stage in stages] == [("first", 2), ("second", 3)]
    assert (shipped / "loss.png").is_file()
    assert load_network(shipped, expect_llm=None).network.config.name == "recipe"


def test_benchmark_weights_decide_which_benchmark_supplies_each_batch(encoder, llm, tok, data, features, tmp_path):
    edits = data.train["tiny"]
    two = TrainingData(train={"tiny": edits, "other": edits[:4]}, validation={})
    run = trainer(new_recipe, encoder, llm, tok, two, features, tmp_path, train_prompts=False,
                  benchmark_weights={"other": 0.0})
    drawn = {run._pick_benchmark() for _ in range(50)}
    assert drawn == {"tiny"}
    uniform = trainer(new_recipe, encoder, llm, tok, two, features, tmp_path / "uniform", train_prompts=False)
    assert {uniform._pick_benchmark() for _ in range(50)} == {"tiny", "other"}
    # 3:1 -> "tiny" on ~3/4 of the draws (400 seeded draws: the binomial sd is 0.022)
    three_to_one = trainer(new_recipe, encoder, llm, tok, two, features, tmp_path / "3to1", train_prompts=False,
                           benchmark_weights={"tiny": 3.0})
    share = sum(three_to_one._pick_benchmark() == "tiny" for _ in range(400)) / 400
    assert 0.65 < share < 0.85
    with pytest.raises(ValueError, match="must name benchmarks trained on"):
        trainer(new_recipe, encoder, llm, tok, two, features, tmp_path / "bad", benchmark_weights={"medcfpp": 2.0})
    with pytest.raises(ValueError, match="at least 0"):
        TrainingConfig(steps=1, benchmark_weights={"tiny": -1.0})
    with pytest.raises(ValueError, match="finite"):
        TrainingConfig(steps=1, benchmark_weights={"tiny": math.inf})


def test_train_refuses_a_misnamed_benchmark_weight_before_any_work(tmp_path):
    run_dir = tmp_path / "run"
    result = CliRunner().invoke(main, ["train", "medrek", "--steps", "1", "--limit", "160", "--run-dir", str(run_dir),
                                       "--align-encoder-slots", "4", "--benchmark-weight", "medcfp=2"])
    assert result.exit_code != 0 and "must name benchmarks trained on" in result.output, result.output
    assert "aligned" not in result.output and not run_dir.exists()


def test_benchmark_weights_survive_a_resume_and_must_match(encoder, llm, tok, data, features, tmp_path):
    weights = {"tiny": 3.0}
    trainer(new_recipe, encoder, llm, tok, data, features, tmp_path, steps=2, train_prompts=False,
            benchmark_weights=weights).run()
    resumed = trainer(new_recipe, encoder, llm, tok, data, features, tmp_path, train_prompts=False,
                      benchmark_weights=weights)
    assert resumed.step == 2
    with pytest.raises(CheckpointError, match="only `steps` may change"):
        trainer(new_recipe, encoder, llm, tok, data, features, tmp_path, train_prompts=False)
