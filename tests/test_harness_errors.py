"""Bad input to the harness: one clear sentence in a ValueError, before any model work."""

from __future__ import annotations

import json

import pytest

from data.batches import BatchError
from data.benchmarks import BenchmarkError
from data.requests import EditRequest, EditRequestError
from experiments.edit_sets import draw_edits, edit_set_of
from experiments.errors import HarnessError
from experiments.harness import run_batch, run_sequential
from experiments.identity import IdentityEditor
from experiments.records import Settings


def one_sentence(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert isinstance(error.value, ValueError)
    assert "\n" not in message and message.endswith("."), message
    return message


def test_unknown_benchmark():
    with pytest.raises(BenchmarkError) as error:
        draw_edits("medcf_plus_plus", 3, seed=0)
    assert "Unknown benchmark 'medcf_plus_plus'" in one_sentence(error)


@pytest.mark.parametrize("count", [0, -1, 756])
def test_more_edits_than_the_split_holds_or_none(count):
    with pytest.raises(BatchError) as error:
        draw_edits("medcfpp", count, seed=0)
    assert "ask for 1 to 755" in one_sentence(error)


def test_record_missing_a_required_field(tmp_path):
    record = {"prompt": "Aspirin treats", "subject": "Aspirin", "target_new": "cats",
              "ground_truth": "pain", "rephrase_prompt": "Aspirin is for",
              "locality_target_prompt": "Tea is", "locality_target_ground_truth": "hot",
              "locality_mapping_prompt": "Tea is", "locality_mapping_ground_truth": "hot",
              "locality_struc_prompt": "Tea is", "locality_struc_ground_truth": "hot",
              "locality_tokenSem_prompt": "Tea is", "locality_tokenSem_ground_truth": "hot"}
    broken = {key: value for key, value in record.items() if key != "target_new"}
    path = tmp_path / "edits.json"
    path.write_text(json.dumps([record, broken]))
    with pytest.raises(BenchmarkError) as error:
        draw_edits(str(path), 1, seed=0)
    assert one_sentence(error) == f"Record 1 of {path} is missing field 'target_new'."


@pytest.mark.parametrize("batch_size", [0, -2, 4])
def test_batch_size_out_of_range_is_refused_before_touching_the_model(batch_size):
    edits = edit_set_of([EditRequest(prompt=f"Fact {i} is", target_new="x") for i in range(3)], "hand")
    for run in (run_batch, run_sequential):
        # model=None: any work on the model would fail differently, so the check comes first.
        with pytest.raises(HarnessError) as error:
            run(IdentityEditor(), None, None, edits, batch_size=batch_size)
        assert f"Batch size {batch_size} is out of range" in one_sentence(error)


def test_a_request_that_cannot_be_edited():
    edits = edit_set_of([EditRequest(prompt="Aspirin treats", target_new="pain"),
                         EditRequest(prompt="Tea is", target_new="  ")], "hand")
    with pytest.raises(EditRequestError) as error:
        run_batch(IdentityEditor(), None, None, edits)
    assert one_sentence(error) == "Request 1: field 'target_new' is empty."


@pytest.mark.parametrize("settings, words", [
    (dict(fluency_new_tokens=0), "fluency_new_tokens must be at least 1"),
    (dict(fluency_prompts=-1), "fluency_prompts must be 0 or more"),
    (dict(perplexity_tokens=-5), "perplexity_tokens must be 0 or more"),
    (dict(perplexity_corpus="ptb"), "Unknown perplexity corpus 'ptb'"),
])
def test_impossible_settings(settings, words):
    with pytest.raises(HarnessError) as error:
        Settings(**settings)
    assert words in one_sentence(error)
