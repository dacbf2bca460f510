"""LMScorer on a tiny random Llama and a byte-level BPE tokenizer trained in the test."""

from __future__ import annotations

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from lm.scoring import LMScorer, Scorer, TokenScores, positions_from_mask

SENTENCES = [
    "The capital of France is Paris.",
    "The Eiffel Tower is located in Paris, France.",
    "Aspirin is used to treat pain and fever.",
    "The mother tongue of Danielle Darrieux is French.",
    "Ibuprofen interacts with warfarin.",
]


def build_tokenizer() -> PreTrainedTokenizerFast:
    """GPT-2-style byte-level BPE that adds BOS and has no pad token (as many causal LMs)."""
    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    raw.train_from_iterator(SENTENCES, trainer)
    raw.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", raw.token_to_id("<s>"))]
    )
    return PreTrainedTokenizerFast(tokenizer_object=raw, bos_token="<s>", eos_token="</s>")


@pytest.fixture(scope="module")
def tok() -> PreTrainedTokenizerFast:
    return build_tokenizer()


@pytest.fixture(scope="module")
def model(tok) -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=300,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    return LlamaForCausalLM(config).eval()


PROMPTS = ["The capital of France is", "Aspirin treats", "The mother tongue of Danielle Darrieux is"]
TARGETS = ["Paris", " pain and fever", "French"]


def test_tokenizer_has_no_pad_and_adds_bos(tok):
    # Guards the test set-up itself: the scorer must cope without a pad token.
    assert tok.pad_token is None
    assert tok("Paris")["input_ids"][0] == tok.bos_token_id


def test_batched_scores_equal_one_at_a_time(model, tok):
    scorer = LMScorer(model, tok, batch_size=8)
    assert isinstance(scorer, Scorer)
    batched = scorer.score(PROMPTS, TARGETS)
    single = LMScorer(model, tok, batch_size=1)
    for prompt, target, together in zip(PROMPTS, TARGETS, batched):
        (alone,) = single.score([prompt], [target])
        assert together.target_ids == alone.target_ids
        assert together.argmax_ids == alone.argmax_ids
        torch.testing.assert_close(
            torch.tensor(together.logprobs), torch.tensor(alone.logprobs), atol=1e-5, rtol=0
        )


def test_logprobs_match_manual_log_softmax(model, tok):
    prompt, target = PROMPTS[1], TARGETS[1]
    (scores,) = LMScorer(model, tok).score([prompt], [target])
    prompt_ids = tok(prompt)["input_ids"]
    target_ids = tok(" pain and fever", add_special_tokens=False)["input_ids"]
    assert scores.target_ids == tuple(target_ids)
    with torch.no_grad():
        logits = model(torch.tensor([prompt_ids + target_ids])).logits[0]
    log_probs = logits.log_softmax(-1)
    first = len(prompt_ids) - 1  # the last prompt token predicts the first target token
    expected = [log_probs[first + j, t].item() for j, t in enumerate(target_ids)]
    expected_argmax = [int(logits[first + j].argmax()) for j in range(len(target_ids))]
    torch.testing.assert_close(torch.tensor(scores.logprobs), torch.tensor(expected), atol=1e-5, rtol=0)
    assert scores.argmax_ids == tuple(expected_argmax)


def test_leading_space_of_target_is_normalised(model, tok):
    scorer = LMScorer(model, tok)
    plain, spaced = scorer.score(["The capital of France is"] * 2, ["Paris", " Paris"])
    assert plain == spaced


def test_generation_first_token_is_argmax_of_last_prompt_position(model, tok):
    scorer = LMScorer(model, tok)
    prompt_ids = [tok(p)["input_ids"] for p in PROMPTS]
    for ids, prompt in zip(prompt_ids, PROMPTS):
        with torch.no_grad():
            expected = int(model(torch.tensor([ids])).logits[0, -1].argmax())
        input_ids = torch.tensor([ids])
        new_ids = scorer.generate_ids(input_ids, torch.ones_like(input_ids), [prompt], 3)
        assert int(new_ids[0, 0]) == expected


def test_batched_generation_equals_one_at_a_time(model, tok):
    batched = LMScorer(model, tok, batch_size=8).generate(PROMPTS, max_new_tokens=5)
    single = LMScorer(model, tok, batch_size=1)
    assert batched == [single.generate([p], max_new_tokens=5)[0] for p in PROMPTS]
    assert tok.padding_side == "right" and tok.pad_token is None  # tokenizer left untouched


def test_positions_from_mask_handles_both_padding_sides():
    mask = torch.tensor([[1, 1, 1, 0], [0, 0, 1, 1]])
    assert positions_from_mask(mask).tolist() == [[0, 1, 2, 0], [0, 0, 0, 1]]


def test_token_scores_helpers():
    scores = TokenScores(target_ids=(5, 6, 7, 8), logprobs=(-0.5, -1.0, -0.25, -0.25), argmax_ids=(5, 0, 7, 8))
    assert scores.accuracy == 0.75  # 3 of 4 argmax ids equal the targets
    assert scores.sum_logprob == -2.0  # -0.5 - 1.0 - 0.25 - 0.25


def test_empty_target_is_refused(model, tok):
    with pytest.raises(ValueError, match="Target 0"):
        LMScorer(model, tok).score(["The capital of France is"], [" "])


@pytest.mark.parametrize("family", ["gpt2", "gptj", "qwen2", "gemma2"])
def test_output_head_at_target_positions_equals_the_models_own_logits(family):
    """The scorer runs the body and applies the output head (and Gemma 2's soft-capping) only
    at target positions; that must equal the model's full forward on every family."""
    from tiny_models import tiny_model, tiny_tokenizer

    family_tok = tiny_tokenizer()
    family_model = tiny_model(family, seed=1)
    if family == "gemma2":  # a cap small enough to change the logits, so it is exercised
        family_model.config.final_logit_softcapping = 2.0
    scores = LMScorer(family_model, family_tok).score(PROMPTS, TARGETS)
    for prompt, target, got in zip(PROMPTS, TARGETS, scores):
        ids = family_tok(prompt)["input_ids"] + list(got.target_ids)
        with torch.no_grad():
            logits = family_model(torch.tensor([ids])).logits[0].float()
        first = len(family_tok(prompt)["input_ids"]) - 1
        rows = logits[first : first + len(got.target_ids)]
        expected = rows.log_softmax(-1).gather(1, torch.tensor(got.target_ids)[:, None]).squeeze(1)
        torch.testing.assert_close(torch.tensor(got.logprobs), expected, atol=1e-5, rtol=0)
        assert got.argmax_ids == tuple(rows.argmax(-1).tolist())
