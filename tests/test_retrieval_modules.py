"""Prompt encoders, projections and network configurations of RECIPE / MedREK."""

import pytest
import torch

from retrieval.modules import AttentionPromptEncoder, CopySlots, EncoderSlots, MLPPromptEncoder, ProjectionMLP
from retrieval.network import NetworkConfig, RetrievalNetwork

WIDTH, LENGTH, LLM_WIDTH = 16, 4, 24


def encoder(slots, copy_tokens, llm_width=LLM_WIDTH, heads=4):
    torch.manual_seed(0)
    return AttentionPromptEncoder(
        WIDTH, LENGTH, llm_width, 0.1, slots=slots, copy_tokens=copy_tokens, heads=heads
    )


def distinct_rows(prompt):
    """How many of the T prompt tokens differ from the first one."""
    return sum(not torch.allclose(prompt[0], row, atol=1e-6) for row in prompt[1:])


def test_single_key_value_attention_is_degenerate_as_published():
    # One key/value vector: every attention weight is 1, so all T prompt tokens coincide.
    prompt = encoder(slots=1, copy_tokens=0)(torch.randn(2, WIDTH))
    assert prompt.shape == (2, LENGTH, LLM_WIDTH)
    assert distinct_rows(prompt[0]) == 0


def test_several_slots_give_distinct_prompt_tokens():
    prompt = encoder(slots=4, copy_tokens=0)(torch.randn(2, WIDTH))
    assert distinct_rows(prompt[0]) == LENGTH - 1


def test_untrained_copy_slots_reproduce_the_statement_tail_in_reading_order():
    # At a realistic head width (SmolLM2: 576 / 8 = 72) the position match is sharp.
    copies = torch.randn(2, 6, 144) * 0.1  # slot j = j-th token from the end
    mask = torch.ones(2, 6, dtype=torch.bool)
    prompt = encoder(slots=2, copy_tokens=6, llm_width=144, heads=2)(torch.randn(2, WIDTH), CopySlots(copies, mask))
    expected = copies[:, :LENGTH].flip(1)  # the last T tokens, first to last
    cosine = torch.nn.functional.cosine_similarity(prompt, expected, dim=-1)
    assert cosine.min() > 0.99


def test_masked_copy_slots_are_never_attended():
    copies = torch.randn(1, 6, LLM_WIDTH)
    mask = torch.tensor([[True, True, False, False, False, False]])
    module = encoder(slots=2, copy_tokens=6)
    z = torch.randn(1, WIDTH)
    changed = copies.clone()
    changed[:, 2:] = 100.0
    assert torch.equal(module(z, CopySlots(copies, mask)), module(z, CopySlots(changed, mask)))


def encoder_slot_module(llm_width=144, heads=2, encoder_width=8):
    torch.manual_seed(0)
    return AttentionPromptEncoder(
        WIDTH, LENGTH, llm_width, 0.1, slots=2, copy_tokens=0, heads=heads,
        encoder_tokens=6, encoder_width=encoder_width,
    )


def test_untrained_encoder_slots_tie_each_prompt_token_to_one_of_the_statement_tail():
    states = torch.randn(2, 6, 8) * 3  # slot j = encoder state of the j-th token from the end
    mask = torch.ones(2, 6, dtype=torch.bool)
    module = encoder_slot_module()
    prompt = module(torch.randn(2, WIDTH), encoded=EncoderSlots(states, mask))
    projected = module.from_encoder(torch.nn.functional.layer_norm(states, (8,)))
    expected = projected[:, :LENGTH].flip(1)  # the last T tokens, first to last
    cosine = torch.nn.functional.cosine_similarity(prompt, expected, dim=-1)
    assert cosine.min() > 0.99
    # Normalised first: the prompt does not depend on the states' scale.
    assert torch.allclose(module(torch.zeros(1, WIDTH), encoded=EncoderSlots(states[:1] * 10, mask[:1])),
                          module(torch.zeros(1, WIDTH), encoded=EncoderSlots(states[:1], mask[:1])), atol=1e-4)


def test_masked_encoder_slots_are_never_attended():
    states = torch.randn(1, 6, 8)
    mask = torch.tensor([[True, True, True, False, False, False]])
    module = encoder_slot_module(llm_width=LLM_WIDTH, heads=4)
    z = torch.randn(1, WIDTH)
    changed = states.clone()
    changed[:, 3:] = 100.0
    assert torch.equal(module(z, encoded=EncoderSlots(states, mask)), module(z, encoded=EncoderSlots(changed, mask)))


def test_mlp_prompt_encoder_and_projection_shapes():
    z = ProjectionMLP(12, WIDTH)(torch.randn(3, 12))
    assert z.shape == (3, WIDTH)
    assert MLPPromptEncoder(WIDTH, LENGTH, LLM_WIDTH, 0.1)(z).shape == (3, LENGTH, LLM_WIDTH)


def config(**overrides):
    fields = dict(
        name="medrek", key_source="question", shared_query_key=True, prompt_source="value",
        prompt_encoder="attention", encoder_hidden=4, llm_width=LLM_WIDTH, embedding_scale=0.1,
        width=WIDTH, prompt_length=LENGTH, copy_tokens=3, heads=4,
    )
    return NetworkConfig(**{**fields, **overrides})


def test_shared_query_key_mlp_puts_identical_texts_on_identical_vectors():
    network = RetrievalNetwork(config())
    features = torch.randn(5, 16)
    assert torch.allclose(network.keys(features), network.queries(features))
    assert torch.allclose(network.keys(features).norm(dim=-1), torch.ones(5))


def test_separate_query_mlp_differs():
    network = RetrievalNetwork(config(shared_query_key=False))
    features = torch.randn(5, 16)
    assert not torch.allclose(network.keys(features), network.queries(features))


def test_the_two_parts_split_every_parameter_once():
    recipe_like = config(prompt_source="key", key_source="statement", shared_query_key=False)
    for network in (RetrievalNetwork(config()), RetrievalNetwork(recipe_like)):
        retriever, prompts = network.part_parameters("retriever"), network.part_parameters("prompts")
        assert not retriever.keys() & prompts.keys()
        assert {**retriever, **prompts}.keys() == dict(network.named_parameters()).keys()
        ids = [{id(p) for p in part.values()} for part in (retriever, prompts)]
        assert ids == [{id(p) for p in group} for group in network.parameter_groups()]
    with pytest.raises(ValueError, match="'retriever' and 'prompts'"):
        network.part_parameters("all")


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"prompt_source": "key"}, "keys built from the statement"),
        ({"prompt_source": "key", "key_source": "statement"}, "key MLP of its own"),
        ({"prompt_encoder": "lstm"}, "prompt_encoder must be"),
        ({"width": 0}, "width must be at least 1"),
    ],
)
def test_inconsistent_configurations_are_refused(overrides, message):
    with pytest.raises(ValueError, match=message):
        config(**overrides)


def test_config_json_round_trip():
    original = config()
    assert NetworkConfig.from_json(original.to_json()) == original
    with pytest.raises(ValueError, match="unknown network settings"):
        NetworkConfig.from_json({**original.to_json(), "surprise": 1})


def test_slots_without_the_attention_encoder_that_reads_them_are_refused():
    base = dict(encoder_hidden=8, llm_width=8, embedding_scale=1.0, name="x", key_source="question",
                shared_query_key=True, prompt_source="value", prompt_encoder="mlp")
    assert NetworkConfig(**base).encoder_tokens == 0
    for slots in ({"encoder_tokens": 8}, {"copy_tokens": 4}):
        with pytest.raises(ValueError, match="attention prompt encoder only"):
            NetworkConfig(**base, **slots)
