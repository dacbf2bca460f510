"""Tiny random models shared by the retrieval tests (this module holds no tests itself).

A 2-layer Llama and a 1-layer BERT over one byte-level BPE vocabulary trained here: every
retrieval code path runs on them in milliseconds, with nothing downloaded. The fixtures `tok`,
`llm` and `encoder` hold one of each per test module that imports them.
"""

from __future__ import annotations

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import BertConfig, BertModel, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from data.requests import EditRequest, LocalityProbe
from retrieval.encoder import KnowledgeEncoder

FACTS = [
    ("Which drug treats asthma?", "Salbutamol", "What is aspirin used for?", "pain"),
    ("Which drug treats gout?", "Allopurinol", "What does insulin regulate?", "glucose"),
    ("The capital of France is", "Paris", "The capital of Italy is", "Rome"),
    ("Danielle Darrieux speaks", "French", "Toko Yasuda plays the", "guitar"),
    ("Which enzyme does warfarin inhibit?", "VKORC1", "Which organ makes bile?", "liver"),
    ("The Eiffel Tower is in", "Berlin", "Big Ben is in", "London"),
]


def requests() -> list[EditRequest]:
    return [
        EditRequest(
            prompt=prompt,
            target_new=target,
            target_true="unknown",
            rephrase_prompts=(f"Tell me: {prompt}",),
            locality={"default": (LocalityProbe(probe, truth),)},
        )
        for prompt, target, probe, truth in FACTS
    ]


def build_tokenizer(special: str = "<s> $A") -> PreTrainedTokenizerFast:
    corpus = [text for fact in FACTS for text in fact] + [f"Tell me: {fact[0]}" for fact in FACTS]
    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    raw.train_from_iterator(corpus, trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<s>", "</s>", "<pad>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    ))
    raw.post_processor = processors.TemplateProcessing(
        single=special, special_tokens=[("<s>", raw.token_to_id("<s>"))]
    )
    return PreTrainedTokenizerFast(tokenizer_object=raw, bos_token="<s>", eos_token="</s>", pad_token="<pad>")


def tiny_llm(tok, seed: int = 0, hidden: int = 32) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
    )
    return LlamaForCausalLM(config).eval().requires_grad_(False)


def tiny_encoder(seed: int = 0) -> KnowledgeEncoder:
    torch.manual_seed(seed)
    tok = build_tokenizer(special="<s> $A")
    config = BertConfig(
        vocab_size=len(tok), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=64,
    )
    return KnowledgeEncoder(BertModel(config), tok, "tiny-bert").eval()


@pytest.fixture(scope="module")
def tok():
    return build_tokenizer()


@pytest.fixture(scope="module")
def llm(tok):
    return tiny_llm(tok)


@pytest.fixture(scope="module")
def encoder():
    return tiny_encoder()
