"""Token positions on the default model's real tokenizer (and the tiny BOS-adding one)."""

from __future__ import annotations

import pytest
import torch

from lm.positions import (
    SubjectNotFound,
    key_token_index,
    last_prompt_token,
    last_real_positions,
    right_padded,
    subject_last_token,
)

PROMPT = "The mother tongue of Danielle Darrieux is"
SUBJECT = "Danielle Darrieux"


def test_subject_last_token_points_at_the_last_x(default_tokenizer):
    tok = default_tokenizer
    ids = tok(PROMPT)["input_ids"]
    index = subject_last_token(tok, PROMPT, SUBJECT)
    assert "x" in tok.decode([ids[index]])
    # independent check by decoding prefixes: the subject is complete at `index`, not before
    assert tok.decode(ids[: index + 1]).endswith(SUBJECT)
    assert not tok.decode(ids[:index]).endswith(SUBJECT)
    assert tok.decode(ids[index + 1 :]).strip() == "is"


def test_subject_last_token_with_bos_and_repeated_subject(tiny_tok):
    prompt = "Paris is in France, and Paris is big."
    ids = tiny_tok(prompt)["input_ids"]
    assert ids[0] == tiny_tok.bos_token_id  # offsets must skip the added BOS correctly
    index = subject_last_token(tiny_tok, prompt, "Paris")
    assert tiny_tok.decode(ids[1 : index + 1]).endswith("Paris")
    assert tiny_tok.decode(ids[1 : index + 1]).count("Paris") == 1  # first occurrence


def test_subject_at_prompt_start(default_tokenizer):
    index = subject_last_token(default_tokenizer, "Danielle Darrieux was born in", SUBJECT)
    ids = default_tokenizer("Danielle Darrieux was born in")["input_ids"]
    assert default_tokenizer.decode(ids[: index + 1]) == SUBJECT


@pytest.mark.parametrize("subject", ["Catherine Deneuve", "darrieux", ""])
def test_missing_subject_raises(default_tokenizer, subject):
    with pytest.raises(SubjectNotFound) as error:
        subject_last_token(default_tokenizer, PROMPT, subject)
    message = str(error.value)
    assert repr(subject) in message and PROMPT in message and "\n" not in message


def test_key_token_index_modes(default_tokenizer):
    tok = default_tokenizer
    last = len(tok(PROMPT)["input_ids"]) - 1
    assert last_prompt_token(tok, PROMPT) == last
    assert key_token_index(tok, PROMPT, SUBJECT, "subject_last") == subject_last_token(tok, PROMPT, SUBJECT)
    assert key_token_index(tok, PROMPT, None, "subject_last") == last
    assert key_token_index(tok, PROMPT, SUBJECT, "prompt_last") == last
    with pytest.raises(ValueError, match="key_token must be"):
        key_token_index(tok, PROMPT, SUBJECT, "subject_first")


@pytest.mark.parametrize("which", ["default", "tiny"])
def test_right_padded_and_last_real_positions_agree(default_tokenizer, tiny_tok, which):
    tok = default_tokenizer if which == "default" else tiny_tok
    texts = ["The capital of France is", "Hi", PROMPT, "Aspirin is used to treat"]
    side_before = tok.padding_side
    batch = right_padded(tok, texts)
    assert tok.padding_side == side_before
    lengths = [len(tok(t)["input_ids"]) for t in texts]
    assert len(set(lengths)) > 1  # the batch really is padded
    ids, mask = batch["input_ids"], batch["attention_mask"]
    assert ids.shape == mask.shape == (len(texts), max(lengths))
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    positions = last_real_positions(mask)
    assert positions.tolist() == [n - 1 for n in lengths]
    for row, text in enumerate(texts):
        n = lengths[row]
        assert ids[row, :n].tolist() == tok(text)["input_ids"]
        assert mask[row, :n].all() and not mask[row, n:].any()
        assert (ids[row, n:] == pad).all()
        assert ids[row, positions[row]] == tok(text)["input_ids"][-1]
        assert positions[row] == last_prompt_token(tok, text)


def test_last_real_positions_on_a_hand_made_mask():
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 0, 0, 0, 0], [1, 1, 1, 1, 1]])
    assert last_real_positions(mask).tolist() == [2, 0, 4]
    assert last_real_positions(mask.bool()).tolist() == [2, 0, 4]
