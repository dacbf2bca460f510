"""The seam (editors/protocol.py): every editor declares what the harness and commands use and
the capabilities it has; a saved edit loads back to the same scores (tiny models)."""

from __future__ import annotations

import pytest
import torch
from test_retrieval_support import build_tokenizer, requests, tiny_encoder, tiny_llm
from tiny_models import tiny_model

import experiments.saved_edits as saved_edits
from data.benchmarks import load_benchmark
from editors.protocol import Applied, Editor, KeyValueWriter, KnowledgeKeys, ReportsRetrieval, RestoresSaved
from editors.registry import EDITORS, make_editor
from experiments.collisions import key_collisions
from experiments.identity import IdentityEditor
from experiments.saved_edits import open_saved_edits, write_manifest
from lm.loading import load
from retrieval.editor import RetrievalEditor
from lm.scoring import LMScorer
from retrieval.medrek import new_medrek

MERGING = {"memit_merge"}  # the one weight editor whose groups share a value per key


@pytest.fixture
def deep_llama(tiny_tok):
    """Deep enough for every editor's llama layers."""
    return tiny_model("llama", seed=1, layers=9), tiny_tok


@pytest.mark.parametrize("name", list(EDITORS))
def test_weight_editors_declare_their_key_value_capability(deep_llama, name):
    model, _ = deep_llama
    editor = make_editor(name, model)
    assert isinstance(editor, Editor) and editor.hparams is not None
    assert not isinstance(editor, (KnowledgeKeys, RestoresSaved))
    if name == "ft_l":  # fine-tunes a layer: writes no value under a key
        assert not isinstance(editor, KeyValueWriter)
        return
    assert isinstance(editor, KeyValueWriter)
    assert editor.merges_shared_keys == (name in MERGING)
    assert editor.key_layer == editor.hparams.last_layer == max(editor.hparams.edited_layers)
    assert editor.key_token == "subject_last"


def test_collisions_are_diagnosed_for_editors_that_overwrite_shared_keys_only(deep_llama):
    model, tok = deep_llama
    records = load_benchmark("counterfact", "test")
    lyon = [r for r in records if r.subject == "Lyon"][:2]
    memit = make_editor("memit", model)
    found = key_collisions(memit, model, tok, lyon, 0.05)
    assert [(c.first, c.second) for c in found] == [(0, 1)] and "same subject 'Lyon'" in found[0].sentence()
    # Far keys are not reported; a threshold above every distance reports the pair by distance.
    other = [lyon[0], next(r for r in records if r.subject not in (None, "Lyon"))]
    assert key_collisions(memit, model, tok, other, 1e-6) == []
    assert "keys at layer" in key_collisions(memit, model, tok, other, 1e6)[0].reason
    for name in ("memit_merge", "ft_l"):
        assert key_collisions(make_editor(name, model), model, tok, lyon, 0.05) == []
    assert key_collisions(IdentityEditor(), model, tok, lyon, 0.05) == []


def test_unedited_reference_is_an_editor_whose_handle_scores_the_plain_model(tiny_llama, tmp_path):
    model, tok = tiny_llama
    editor = IdentityEditor()
    applied = editor.apply(model, tok, requests()[:1])
    assert isinstance(editor, Editor) and isinstance(applied, Applied)
    assert not isinstance(applied, ReportsRetrieval) and dict(applied.info) == {}


def scores_of(scorer, items):
    return [s.logprobs for s in scorer.score([r.prompt for r in items], [r.target_new for r in items])]


def test_a_saved_weight_edit_opens_with_the_edited_scores(tiny_llama, tmp_path, monkeypatch):
    model, tok = tiny_llama
    edits = requests()[:2]
    editor = make_editor("ft_l", model, {"layer": 2, "steps": 3, "lr": 0.05})
    applied = editor.apply(model, tok, edits)
    try:
        edited = scores_of(applied.scorer, edits)
        applied.save(tmp_path)
        write_manifest(tmp_path, editor.name, "base", edits)
    finally:
        applied.undo()
    monkeypatch.setattr(saved_edits, "load", lambda name: (model, tok) if name == "base" else load(name))
    opened = open_saved_edits(tmp_path)
    assert opened.editor == "ft_l"
    for got, want in zip(scores_of(opened.edited, edits), edited):
        assert got == pytest.approx(want, abs=1e-5)
    for got, want in zip(scores_of(opened.unedited, edits), scores_of(LMScorer(model, tok), edits)):
        assert got == pytest.approx(want, abs=1e-6)
    assert scores_of(opened.edited, edits) != pytest.approx(scores_of(opened.unedited, edits), abs=1e-4)


def test_a_saved_retrieval_memory_opens_with_the_edited_scores(monkeypatch, tmp_path):
    tok = build_tokenizer()
    llm, encoder = tiny_llm(tok), tiny_encoder()
    network = new_medrek(encoder, llm, width=32, heads=4)

    def medrek():
        editor = RetrievalEditor(network, encoder)
        editor.name = "medrek"
        return editor

    editor = medrek()
    assert isinstance(editor, (Editor, KnowledgeKeys, RestoresSaved)) and not isinstance(editor, KeyValueWriter)
    edits = requests()
    applied = editor.apply(llm, tok, edits)
    assert isinstance(applied, (Applied, ReportsRetrieval))
    # The keys it reports are the keys it stored: same inner products with every stored entry.
    keys = editor.knowledge_keys(edits)
    scores, ids = editor.memory.search(keys, k=len(edits))
    position = {entry: row for row, entry in enumerate(applied.ids)}
    gram = keys @ keys.T
    for row in range(len(edits)):
        want = torch.stack([gram[row, position[int(entry)]] for entry in ids[row]])
        assert torch.allclose(scores[row], want, atol=1e-4)
    edited = scores_of(applied.scorer, edits)
    applied.save(tmp_path)
    write_manifest(tmp_path, editor.name, "base", edits)

    monkeypatch.setattr(saved_edits, "load", lambda name: (llm, tok))
    monkeypatch.setattr(saved_edits, "build_editor", lambda name, model: medrek())
    opened = open_saved_edits(tmp_path)
    for got, want in zip(scores_of(opened.edited, edits), edited):
        assert got == pytest.approx(want, abs=1e-5)
    assert opened.retrieve([e.prompt for e in edits]) == applied.retrieved_entries([e.prompt for e in edits])
