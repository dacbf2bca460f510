"""Reuse of optimised value vectors across applies and editors (`editors.value_cache`).

A tiny random llama checks the plumbing: what is found again, what must not be, that a reused
value gives the very same edit, and that timings charge an editor for the values it reused.
"""

from __future__ import annotations

import json

import pytest
import torch

from data.requests import EditRequest, LocalityProbe
from editors.registry import make_editor
from experiments.edit_sets import edit_set_of
from experiments.harness import run_batch
from experiments.records import RunRecord, Settings
from experiments.tables import comparison_table

FAST = {"layers": "1-2", "v_num_grad_steps": 4, "n_templates": 2, "template_len": 4, "mom2_tokens": 300,
        "v_dtype": "float32"}
MERGE = {**FAST, "shared_v_num_grad_steps": 4}
# AlphaEdit's own value settings differ from MEMIT's; with MEMIT's it poses MEMIT's value problem.
ALPHAEDIT_AS_MEMIT = {**FAST, "v_lr": 0.5, "clamp_norm_factor": 4.0, "v_weight_decay": 1e-3}

REQUESTS = (
    EditRequest(prompt="The capital of France is", subject="France", target_new="Rome", target_true="Paris"),
    EditRequest(prompt="Water boils at a temperature of", subject="Water", target_new="fifty degrees"),
    EditRequest(prompt="The novel was written in English by", subject="novel", target_new="John Smith"),
)
# The first request's subject again, with another fact: MEMIT-Merge merges the two.
SAME_SUBJECT = EditRequest(prompt="France is a country in", subject="France", target_new="Asia",
                           target_true="Europe")


@pytest.fixture
def root(tmp_path, monkeypatch):
    monkeypatch.setenv("EDITSCOPE_CACHE", str(tmp_path / "global"))  # nothing may land there
    return tmp_path / "editor-cache"


def value_files(root) -> list:
    return sorted((root / "values").rglob("*.safetensors"))


def apply_and_record(editor, model, tok, requests):
    """Apply, note the value stage's progress calls and the edited weights, then undo."""
    stages = []
    editor.progress = lambda stage, done, total: stages.append(stage)
    applied = editor.apply(model, tok, requests)
    weights = {name: model.get_parameter(name).detach().clone() for name in applied.edited_parameters}
    applied.undo()
    return applied.info, stages.count("values"), weights


def test_a_second_apply_optimises_nothing_and_edits_bit_identically(tiny_llama, root):
    model, tok = tiny_llama
    editor = make_editor("memit", model, FAST, cache_root=root)
    first, first_steps, first_weights = apply_and_record(editor, model, tok, REQUESTS)
    assert first["value_groups_reused"] == 0 and first_steps > 0
    assert first["seconds"]["values_reused"] == 0.0
    assert len(value_files(root)) == len(REQUESTS)  # one small file per group

    second, second_steps, second_weights = apply_and_record(editor, model, tok, REQUESTS)
    assert second["value_groups_reused"] == len(REQUESTS) and second_steps == 0
    # Charged what the first apply's optimisation cost (its wall time also held the hashing and
    # the writes), and spent only the lookups now.
    assert 0 < second["seconds"]["values_reused"] <= first["seconds"]["values"]
    assert second["seconds"]["values"] < first["seconds"]["values"]
    assert all(torch.equal(first_weights[name], second_weights[name]) for name in first_weights)
    assert second["value_loss_mean"] == first["value_loss_mean"]


def test_alphaedit_and_merge_singletons_reuse_memit_values(tiny_llama, root):
    model, tok = tiny_llama
    apply_and_record(make_editor("memit", model, FAST, cache_root=root), model, tok, REQUESTS)

    alpha, alpha_steps, _ = apply_and_record(make_editor("alphaedit", model, ALPHAEDIT_AS_MEMIT, cache_root=root),
                                             model, tok, REQUESTS)
    assert alpha["value_groups_reused"] == len(REQUESTS) and alpha_steps == 0
    own, own_steps, _ = apply_and_record(make_editor("alphaedit", model, FAST, cache_root=root), model, tok, REQUESTS)
    assert own["value_groups_reused"] == 0 and own_steps > 0  # its own value settings: its own problem

    merge = make_editor("memit_merge", model, MERGE, cache_root=root)
    distinct, distinct_steps, _ = apply_and_record(merge, model, tok, REQUESTS)
    assert distinct["value_groups_reused"] == len(REQUESTS) and distinct_steps == 0

    # A merged group is a different problem (two members, the shared budget): only it is optimised.
    mixed, mixed_steps, _ = apply_and_record(merge, model, tok, (*REQUESTS, SAME_SUBJECT))
    assert mixed["group_sizes"] == [2, 1, 1] and mixed["value_groups_reused"] == 2 and mixed_steps > 0


def test_nothing_is_reused_once_an_edit_changed_the_model(tiny_llama, root):
    model, tok = tiny_llama
    editor = make_editor("memit", model, FAST, cache_root=root)
    earlier = editor.apply(model, tok, REQUESTS)  # stays applied: sequential editing
    try:
        later = editor.apply(model, tok, REQUESTS)
        later.undo()
    finally:
        earlier.undo()
    assert later.info["value_groups_reused"] == 0
    assert len(value_files(root)) == 2 * len(REQUESTS)  # one set per model state


def test_changing_one_option_reuses_nothing(tiny_llama, root):
    model, tok = tiny_llama
    apply_and_record(make_editor("memit", model, FAST, cache_root=root), model, tok, REQUESTS)
    info, steps, _ = apply_and_record(make_editor("memit", model, {**FAST, "v_lr": 0.3}, cache_root=root),
                                      model, tok, REQUESTS)
    assert info["value_groups_reused"] == 0 and steps > 0


def test_a_corrupt_or_foreign_file_is_recomputed_not_trusted(tiny_llama, root):
    model, tok = tiny_llama
    editor = make_editor("memit", model, FAST, cache_root=root)
    _, _, clean_weights = apply_and_record(editor, model, tok, REQUESTS)
    first, second, third = value_files(root)
    first.write_bytes(first.read_bytes()[:40])  # truncated
    third.write_bytes(second.read_bytes())  # another group's (valid) file under this key

    info, steps, weights = apply_and_record(editor, model, tok, REQUESTS)
    assert info["value_groups_reused"] == 1 and steps > 0
    # The two groups are re-optimised in a batch of two instead of three; batched floating-point
    # kernels may split their sums differently for another batch composition (and do on some
    # CPUs), so the recomputed edit equals the clean one to rounding, not bit for bit. A trusted
    # foreign file would give a different fact's value: far outside this tolerance.
    for name in weights:
        torch.testing.assert_close(weights[name], clean_weights[name], rtol=1e-4, atol=1e-5)
    info, steps, _ = apply_and_record(editor, model, tok, REQUESTS)  # both were rewritten
    assert info["value_groups_reused"] == len(REQUESTS) and steps == 0


def test_reuse_can_be_turned_off(tiny_llama, root):
    model, tok = tiny_llama
    editor = make_editor("memit", model, FAST, cache_root=root, reuse_values=False)
    apply_and_record(editor, model, tok, REQUESTS)
    info, steps, _ = apply_and_record(editor, model, tok, REQUESTS)
    assert info["value_groups_reused"] == 0 and steps > 0 and info["seconds"]["values_reused"] == 0.0
    assert value_files(root) == []


def test_the_table_charges_reused_values_to_the_editor_that_reused_them(tiny_llama, root, tmp_path):
    model, tok = tiny_llama
    located = tuple(
        EditRequest(prompt=r.prompt, subject=r.subject, target_new=r.target_new, target_true=r.target_true,
                    locality={"default": (LocalityProbe("Cats sleep", "a lot"),)}, metadata={"index": i})
        for i, r in enumerate(REQUESTS)
    )
    edits = edit_set_of(located, "hand-made")
    settings = Settings(fluency_prompts=0, perplexity_tokens=0)
    records = [
        run_batch(make_editor(name, model, hparams, cache_root=root), model, tok, edits, settings=settings,
                  baseline_dir=tmp_path / "baseline")
        for name, hparams in (("memit", FAST), ("alphaedit", ALPHAEDIT_AS_MEMIT))
    ]
    memit, alpha = (record.timings.steps[0] for record in records)
    assert memit.reused_seconds == 0.0 and alpha.reused_seconds > 0
    assert alpha.edit_cost_seconds == alpha.edit_seconds + alpha.reused_seconds

    # The record keeps both numbers through JSON; a record written before the field reads as 0.
    again = RunRecord.from_dict(json.loads(records[1].to_json()))
    assert again.timings.steps[0] == alpha
    older = json.loads(records[1].to_json())
    del older["timings"]["steps"][0]["reused_seconds"]
    assert RunRecord.from_dict(older).timings.steps[0].reused_seconds == 0.0

    table = comparison_table(records, "memit then alphaedit")
    edit_column = [column.header for column in table.columns].index("Edit s")
    shown = list(table.columns[edit_column].cells)
    assert shown == [f"{records[0].timings.edit_cost_seconds:.2f}", f"{alpha.edit_cost_seconds:.2f}"]
    assert alpha.edit_cost_seconds > alpha.edit_seconds
