"""Retrieval editors end to end on tiny random models: injection, the scorer seam, memory
round trips, undo, and bad input."""

import dataclasses
import json

import pytest
import torch
from safetensors.torch import save_file
from test_retrieval_support import requests, tiny_llm
from test_retrieval_support import encoder, llm, tok  # noqa: F401 (fixtures)

from data.requests import EditRequestError
from lm.scoring import LMScorer, output_logits, pad_sequences
from retrieval.checkpoint import (
    FORMAT_NAME,
    FORMAT_VERSION,
    CheckpointError,
    load_network,
    save_network,
    tensor_checksum,
)
from retrieval.editor import RetrievalEditor
from retrieval.injection import prepend_prompts, prompted_generate, prompted_hidden
from retrieval.incontext import InContextEditor
from retrieval.medrek import new_medrek, new_medrek_copy
from retrieval.memory import MemoryFormatError, NetworkIdentity
from retrieval.recipe import new_recipe


@pytest.fixture(params=["recipe", "medrek", "medrek_copy", "ike"])
def editor(request, encoder, llm):
    if request.param == "recipe":
        return RetrievalEditor(new_recipe(encoder, llm, width=32), encoder)
    make = new_medrek_copy if request.param == "medrek_copy" else new_medrek
    network = make(encoder, llm, width=32, heads=4)
    return (InContextEditor if request.param == "ike" else RetrievalEditor)(network, encoder)


def batch(tok, texts, side, device="cpu"):
    return pad_sequences(tok(texts)["input_ids"], tok.pad_token_id, side, torch.device(device))


TEXTS = ["Which drug treats gout?", "The capital of France is", "Big Ben is in"]


@pytest.mark.parametrize("side", ["right", "left"])
def test_injection_equals_manual_inputs_embeds_concatenation(tok, llm, side):
    ids, mask = batch(tok, TEXTS, side)
    prompts = torch.randn(len(TEXTS), 3, llm.config.hidden_size) * 0.1
    got = output_logits(llm, prompted_hidden(llm, ids, mask, prompts))
    embed = llm.get_input_embeddings()
    for row in range(len(TEXTS)):
        real = mask[row].bool()
        manual_embeds = torch.cat([prompts[row], embed(ids[row, real])])[None]
        manual = llm(inputs_embeds=manual_embeds).logits[0, 3:]
        assert torch.allclose(got[row, real], manual, atol=1e-5)


def test_prepend_puts_the_prompt_right_before_the_text(tok, llm):
    ids, mask = batch(tok, TEXTS, "left")
    embeds = llm.get_input_embeddings()(ids)
    prompts = torch.full((len(TEXTS), 2, embeds.shape[-1]), 7.0)
    combined, new_mask = prepend_prompts(embeds, mask, prompts)
    for row in range(len(TEXTS)):
        pads = int((mask[row] == 0).sum())
        assert new_mask[row].tolist() == [0] * pads + [1] * (mask.shape[1] - pads + 2)
        assert torch.equal(combined[row, pads : pads + 2], prompts[row])
        assert torch.equal(combined[row, pads + 2 :], embeds[row, pads:])


def test_prompted_generation_matches_a_manual_greedy_loop(tok, llm):
    ids, mask = batch(tok, TEXTS, "left")
    prompts = torch.randn(len(TEXTS), 3, llm.config.hidden_size) * 0.1
    generated = prompted_generate(llm, ids, mask, prompts, max_new_tokens=4, pad_id=tok.pad_token_id)
    embed = llm.get_input_embeddings()
    for row in range(len(TEXTS)):
        sequence = torch.cat([prompts[row], embed(ids[row, mask[row].bool()])])
        for step in range(4):
            token = llm(inputs_embeds=sequence[None]).logits[0, -1].argmax()
            if int(generated[row, step]) == tok.eos_token_id:
                break
            assert int(token) == int(generated[row, step])
            sequence = torch.cat([sequence, embed(token[None])])


def test_an_empty_memory_changes_no_output(tok, llm, editor):
    applied = editor.apply(llm, tok, requests())
    applied.undo()
    plain = LMScorer(llm, tok)
    prompts, targets = TEXTS, ["colchicine", "Paris", "London"]
    assert applied.scorer.score(prompts, targets) == plain.score(prompts, targets)
    assert applied.scorer.generate(prompts, 5) == plain.generate(prompts, 5)
    assert applied.retrieve(prompts).retrieved == (None, None, None)


def test_scorer_injects_exactly_the_retrieved_prompt_and_leaves_other_rows_alone(tok, llm, encoder):
    network = new_medrek(encoder, llm, width=32, heads=4)
    applied = RetrievalEditor(network, encoder).apply(llm, tok, requests())
    edit, unrelated = requests()[0], "Big Ben is in"
    assert applied.retrieve([edit.prompt]).retrieved == (applied.ids[0],)
    # With a shared query-key MLP an edit prompt is its own key (cosine 1); force the
    # unrelated row to retrieve nothing so the batch is mixed.
    store = applied.store
    store.sentinel_key = store.network.queries(store.encoder.encode([unrelated])).detach()
    assert applied.retrieve([unrelated, edit.prompt]).retrieved == (None, applied.ids[0])

    scores = applied.scorer.score([edit.prompt, unrelated], [edit.target_new, "London"])
    plain = LMScorer(llm, tok).score([unrelated], ["London"])[0]
    assert scores[1].argmax_ids == plain.argmax_ids
    assert scores[1].logprobs == pytest.approx(plain.logprobs, abs=1e-5)
    ids, mask = batch(tok, [edit.prompt + " " + edit.target_new], "right")
    manual = output_logits(llm, prompted_hidden(llm, ids, mask, store.memory.values_for([applied.ids[0]])))
    target_ids = scores[0].target_ids
    first = len(tok(edit.prompt)["input_ids"]) - 1
    manual_logprobs = manual[0, first : first + len(target_ids)].log_softmax(-1)
    expected = manual_logprobs.gather(1, torch.tensor(target_ids)[:, None]).squeeze(1)
    assert scores[0].logprobs == pytest.approx(expected.tolist(), abs=1e-5)
    generated = applied.scorer.generate([edit.prompt, unrelated], 4)
    assert generated[1] == LMScorer(llm, tok).generate([unrelated], 4)[0]


def test_undo_removes_exactly_the_added_edits(tok, llm, editor):
    first = editor.apply(llm, tok, requests()[:3])
    second = editor.apply(llm, tok, requests()[3:])
    queries = [r.prompt for r in requests()[3:]]
    before = second.retrieve(queries)
    first.undo()
    assert sorted(editor.memory.ids) == sorted(second.ids)
    assert second.retrieve(queries) == before
    first.undo()  # a second undo changes nothing
    assert sorted(editor.memory.ids) == sorted(second.ids)
    second.undo()
    assert len(editor.memory) == 0


def test_memory_save_load_round_trip_gives_identical_retrievals(tok, llm, encoder, editor, tmp_path):
    applied = editor.apply(llm, tok, requests())
    queries = [r.prompt for r in requests()] + [r.rephrase_prompts[0] for r in requests()] + TEXTS
    path = tmp_path / "memory.safetensors"
    editor.memory.save(path)
    fresh = type(editor)(editor.network, encoder)
    fresh.load_memory(path, llm)
    reloaded = fresh.apply(llm, tok, requests()[:1])
    reloaded.undo()  # exercise the reloaded memory through the normal seam
    assert reloaded.retrieve(queries) == applied.retrieve(queries)
    assert torch.equal(fresh.memory.values_for(applied.ids), editor.memory.values_for(applied.ids))


def test_an_empty_target_is_refused_and_nothing_is_added(tok, llm, editor):
    editor.apply(llm, tok, requests()[:2])
    bad = requests()[2:4]
    bad[1] = dataclasses.replace(bad[1], target_new="  ")
    with pytest.raises(EditRequestError, match=r"^Request 1: field 'target_new' is empty\.$"):
        editor.apply(llm, tok, bad)
    assert len(editor.memory) == 2


def test_a_corrupt_memory_file_is_refused_and_the_memory_kept(tok, llm, editor, tmp_path):
    editor.apply(llm, tok, requests())
    path = tmp_path / "memory.safetensors"
    editor.memory.save(path)
    path.write_bytes(path.read_bytes()[:-20])
    before = editor.memory
    with pytest.raises(MemoryFormatError, match="truncated or corrupt"):
        editor.load_memory(path, llm)
    assert editor.memory is before and len(before) == len(requests())


def test_a_network_for_another_llm_width_is_refused(tok, encoder, editor, tmp_path):
    wider = tiny_llm(tok, hidden=48)
    with pytest.raises(CheckpointError, match="trained for an LLM of width 32, but this model has width 48"):
        editor.apply(wider, tok, requests())
    assert editor.memory is None


def test_checkpoint_round_trip_and_refusals(tok, llm, encoder, editor, tmp_path):
    identity = editor.llm_identity(llm)
    path = tmp_path / "network.safetensors"
    save_network(path, editor.network, llm=identity, encoder=encoder.identity(), storage_dtype=torch.bfloat16)
    loaded = load_network(tmp_path, expect_llm=identity, expect_encoder=encoder.identity())
    for name, value in editor.network.state_dict().items():
        assert torch.equal(loaded.network.state_dict()[name], value.to(torch.bfloat16).float())
    other_width = dataclasses.replace(identity, width=4096)
    with pytest.raises(CheckpointError, match=r"width 32, but this model has width 4096; train"):
        load_network(path, expect_llm=other_width)
    with pytest.raises(CheckpointError, match="not for 'other'"):
        load_network(path, expect_llm=dataclasses.replace(identity, fingerprint="other"))
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_network(path, expect_llm=identity)


def test_a_checkpoint_from_before_encoder_slots_loads_as_what_it_is(tok, llm, encoder, tmp_path):
    # Written as the z_v-slot MedREK was, without the encoder_tokens setting in its header: it
    # must come back as that design, never as one with (untrained) encoder slots.
    network = new_medrek(encoder, llm, width=32, heads=4, encoder_tokens=0)
    identity = RetrievalEditor(network, encoder).llm_identity(llm)
    config = network.config.to_json()
    del config["encoder_tokens"]
    header = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "config": config,
              "llm": dataclasses.asdict(identity), "encoder": dataclasses.asdict(encoder.identity())}
    tensors = {name: value.contiguous() for name, value in network.state_dict().items()}
    header["checksum"] = tensor_checksum(header, tensors)
    save_file(tensors, tmp_path / "network.safetensors", metadata={FORMAT_NAME: json.dumps(header)})
    loaded = load_network(tmp_path, expect_llm=identity).network
    assert not loaded.reads_encoder_tokens and loaded.prompt_encoder.from_encoder is None
    with_slots = new_medrek(encoder, llm, width=32, heads=4, encoder_tokens=4)
    save_network(tmp_path / "network.safetensors", with_slots, llm=identity, encoder=encoder.identity())
    assert load_network(tmp_path, expect_llm=identity).network.config.encoder_tokens == 4


def test_a_memory_is_refused_by_an_editor_with_another_network(tok, llm, encoder, editor, tmp_path):
    built_by = NetworkIdentity("medrek", "a" * 64)
    saving = RetrievalEditor(editor.network, encoder, network_identity=built_by)
    saving.apply(llm, tok, requests()[:2])
    path = tmp_path / "memory.safetensors"
    saving.memory.save(path)
    RetrievalEditor(editor.network, encoder, network_identity=built_by).load_memory(path, llm)  # same: fine
    other = RetrievalEditor(editor.network, encoder, network_identity=NetworkIdentity("medrek", "b" * 64))
    with pytest.raises(MemoryFormatError, match="was built by retrieval network 'medrek' \\(checksum aaaa"):
        other.load_memory(path, llm)
    assert other.memory is None
