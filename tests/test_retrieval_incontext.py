"""`ike` (in-context editing through MedREK's retriever) and the published MedREK prompt's
independence from the LLM, on tiny random models."""

import copy

import pytest
import torch
from test_retrieval_support import requests
from test_retrieval_support import encoder, llm, tok  # noqa: F401 (fixtures)

from lm.scoring import LMScorer
from retrieval.checkpoint import CheckpointError
from retrieval.editor import RetrievalEditor
from retrieval.incontext import CONTEXT_TEMPLATE, InContextEditor, context_text
from retrieval.medrek import new_medrek, new_medrek_copy
from retrieval.network import statement_text


def ike(encoder, llm):
    return InContextEditor(new_medrek(encoder, llm, width=32, heads=4), encoder)


def test_the_context_is_the_template_filled_with_the_statement():
    entry = {"prompt": "Which drug treats gout? ", "target_new": " Allopurinol", "subject": "gout"}
    assert CONTEXT_TEMPLATE == "New Fact: {prompt} {target_new}\nPrompt: "
    assert context_text(entry) == "New Fact: Which drug treats gout? Allopurinol\nPrompt: "


def test_with_an_empty_memory_ike_is_exactly_the_unedited_model(tok, llm, encoder):
    editor = ike(encoder, llm)
    applied = editor.apply(llm, tok, requests())
    applied.undo()
    prompts, targets = [r.prompt for r in requests()], [r.target_new for r in requests()]
    plain = LMScorer(llm, tok)
    assert applied.scorer.score(prompts, targets) == plain.score(prompts, targets)
    assert applied.scorer.generate(prompts, 4) == plain.generate(prompts, 4)


def test_a_retrieving_row_sees_the_context_tokens_before_its_own_and_others_are_plain(tok, llm, encoder):
    editor = ike(encoder, llm)
    applied = editor.apply(llm, tok, requests())
    edit, unrelated = requests()[1], "Big Ben is in"
    store = applied.store
    # Make the unrelated query retrieve nothing (the untrained network retrieves broadly).
    store.sentinel_key = store.network.queries(store.encoder.encode([unrelated])).detach()
    assert applied.retrieve([unrelated, edit.prompt]).retrieved == (None, applied.ids[1])

    scores = applied.scorer.score([unrelated, edit.prompt], ["London", edit.target_new])
    assert scores[0] == LMScorer(llm, tok).score([unrelated], ["London"])[0]
    context = tok(f"New Fact: {statement_text(edit)}\nPrompt: ", add_special_tokens=False)["input_ids"]
    prompt = tok(edit.prompt)["input_ids"]
    target = tok(" " + edit.target_new, add_special_tokens=False)["input_ids"]
    logits = llm(input_ids=torch.tensor([context + prompt + target])).logits[0]
    first = len(context) + len(prompt) - 1
    expected = logits[first : first + len(target)].log_softmax(-1)
    expected = expected.gather(1, torch.tensor(target)[:, None]).squeeze(1)
    assert scores[1].logprobs == pytest.approx(expected.tolist(), abs=1e-5)

    generated = applied.scorer.generate([unrelated, edit.prompt], 3)
    assert generated[0] == LMScorer(llm, tok).generate([unrelated], 3)[0]
    greedy = llm.generate(input_ids=torch.tensor([context + prompt]), max_new_tokens=3, do_sample=False,
                          pad_token_id=tok.pad_token_id)[0, len(context) + len(prompt):]
    assert generated[1] == tok.decode(greedy, skip_special_tokens=True)


def test_medrek_prompts_never_see_the_llm_embeddings_of_the_statement(tok, llm, encoder):
    perturbed = copy.deepcopy(llm)
    with torch.no_grad():
        perturbed.get_input_embeddings().weight.add_(torch.randn_like(perturbed.get_input_embeddings().weight))
    statements = [statement_text(request) for request in requests()]
    features = encoder.encode(statements)
    # Both designs the issue allows: slots from z_v alone, and with encoder slots (the preset).
    for published in (new_medrek(encoder, llm, width=32, heads=4, encoder_tokens=0),
                      new_medrek(encoder, llm, width=32, heads=4, encoder_tokens=4)):
        with torch.no_grad():
            assert torch.equal(published.statement_prompts(features, statements, llm, tok, encoder),
                               published.statement_prompts(features, statements, perturbed, tok, encoder))
    with torch.no_grad():
        # The copy-slot variant does read them: the same perturbation changes its prompts.
        copying = new_medrek_copy(encoder, llm, width=32, heads=4)
        assert not torch.allclose(copying.statement_prompts(features, statements, llm, tok, encoder),
                                  copying.statement_prompts(features, statements, perturbed, tok, encoder),
                                  atol=1e-3)


def test_encoder_slots_read_the_knowledge_encoders_token_states(tok, llm, encoder):
    # Same pooled features, another encoder's token states: the prompt changes.
    other = copy.deepcopy(encoder)
    with torch.no_grad():
        other.input_embeddings.weight.add_(torch.randn_like(other.input_embeddings.weight))
    statements = [statement_text(request) for request in requests()]
    features = encoder.encode(statements)
    published = new_medrek(encoder, llm, width=32, heads=4, encoder_tokens=4)
    assert published.reads_encoder_tokens
    with torch.no_grad():
        assert not torch.allclose(published.statement_prompts(features, statements, llm, tok, encoder),
                                  published.statement_prompts(features, statements, llm, tok, other), atol=1e-3)


def test_an_ike_memory_is_refused_by_the_prompt_editor_of_the_same_network(tok, llm, encoder, tmp_path):
    editor = ike(encoder, llm)
    editor.apply(llm, tok, requests())
    editor.memory.save(tmp_path / "memory.safetensors")
    with pytest.raises(CheckpointError, match=r"holds values of shape \(0,\), but the medrek editor stores"):
        RetrievalEditor(editor.network, encoder).load_memory(tmp_path / "memory.safetensors", llm)
