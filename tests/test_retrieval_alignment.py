"""The aligned initialisation of MedREK's encoder slots (retrieval/alignment.py): on real train
statements, with the real knowledge encoder and the embedded default LLM, the fitted map sends
a wordpiece's encoder state near the LLM's embedding of the token it is aligned with."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from data.benchmarks import load_benchmark
from retrieval.alignment import aligned_pairs, aligned_token, align_encoder_slots
from retrieval.encoder import KnowledgeEncoder
from retrieval.medrek import new_medrek
from retrieval.network import statement_text


@pytest.fixture(scope="module")
def encoder():
    return KnowledgeEncoder.load("default", device="cpu")


@pytest.fixture(scope="module")
def statements():
    """150 CounterFact and 150 MedCF++ train statements to fit on, then 20 + 20 others."""
    texts = {name: [statement_text(request) for request in load_benchmark(name, "train")[:170]]
             for name in ("counterfact", "medcfpp")}
    fit = texts["counterfact"][:150] + texts["medcfpp"][:150]
    return fit, texts["counterfact"][150:] + texts["medcfpp"][150:]


def test_aligned_token_is_the_one_whose_span_holds_the_character():
    # " Tower" (with its space) spans 3..9; a wordpiece starting at 4 ("tower") belongs to it.
    spans = [(0, 3), (3, 9), (9, 12)]
    assert aligned_token(spans, 0) == 0
    assert aligned_token(spans, 4) == 1
    assert aligned_token(spans, 11) == 2
    assert aligned_token(spans, 12) is None
    # A character no token covers goes to the next token.
    assert aligned_token([(0, 3), (5, 8)], 4) == 1


def test_pairs_align_wordpieces_with_the_llm_tokens_at_their_characters(encoder, default_tokenizer):
    pairs = aligned_pairs(encoder, default_tokenizer, ["The Eiffel Tower is located in Rome"])
    # MiniLM: the e ##iff ##el tower is located in rome; SmolLM2: The ĠE iffel ĠTower Ġis Ġlocated
    # Ġin ĠRome. Pairs come last wordpiece first.
    assert pairs.from_end.tolist() == list(range(9))
    assert default_tokenizer.convert_ids_to_tokens(pairs.token_ids.tolist()) == [
        "ĠRome", "Ġin", "Ġlocated", "Ġis", "ĠTower", "iffel", "iffel", "ĠE", "The"]
    assert pairs.states.shape == (9, encoder.hidden_width)
    # Layer-normalised, as the encoder slots read them.
    assert pairs.states.mean(-1).abs().max() < 1e-4
    assert torch.allclose(pairs.states.std(-1, unbiased=False), torch.ones(9), atol=1e-3)


def test_the_aligned_untrained_prompt_is_near_the_statements_last_llm_tokens(
    encoder, default_model, statements
):
    llm, tok = default_model
    fit, held_out = statements
    network = new_medrek(encoder, llm, encoder_tokens=4)
    alignment = align_encoder_slots(network, encoder, llm, tok, fit, held_out)
    # The most frequent aligned token is ~4% of wordpieces, a random token 1/49152; the map fitted
    # on 4,000 statements gets ~0.37 (last three: ~0.47), on these 300 somewhat less.
    assert alignment.accuracy > 0.2 and alignment.accuracy_last > 0.2

    # The untrained prompt, from the encoder alone, is near the LLM's embeddings of the tokens
    # aligned with the statement's last T wordpieces (in reading order), far more often than
    # for another statement's tokens. Measured: 0.41 against 0.07.
    with torch.no_grad():
        prompts = network.statement_prompts(encoder.encode(held_out), held_out, llm, tok, encoder)
    table = F.normalize(llm.get_input_embeddings().weight.float(), dim=-1)
    nearest = (F.normalize(prompts, dim=-1) @ table.T).argmax(-1)  # [N, T]
    length = network.config.prompt_length
    aligned = torch.stack([aligned_pairs(encoder, tok, [text]).token_ids[:length].flip(0) for text in held_out])
    own = float((nearest == aligned).float().mean())
    other = float((nearest == aligned.roll(1, 0)).float().mean())
    assert own > 0.25 and own > other + 0.15


def test_a_network_without_encoder_slots_is_refused(encoder, default_model):
    llm, tok = default_model
    with pytest.raises(ValueError, match="no encoder slots"):
        align_encoder_slots(new_medrek(encoder, llm, width=32, heads=4, encoder_tokens=0), encoder, llm, tok, ["a b"], ["c d"])


def test_train_starts_the_encoder_slots_from_the_map_fitted_on_train_statements(
    encoder, default_model, tmp_cache, tmp_path
):
    # End to end through `train medrek`: at a prompt rate of 0 the one step changes nothing, so
    # the exported projection is the alignment fitted on the command's own draw of train
    # statements (retrieval.alignment), not the random initialisation it replaced.
    from click.testing import CliRunner

    from cli import main
    from experiments.commands.train import _alignment_statements
    from retrieval.checkpoint import load_network
    from retrieval.training_data import load_training_data

    llm, tok = default_model
    limit, fitted = 160, 20  # 150 held out for validation, 10 train records per benchmark
    exported = tmp_path / "export"
    result = CliRunner().invoke(main, [
        "train", "medrek", "--name", "aligned", "--run-dir", str(tmp_path / "run"), "--steps", "1",
        "--limit", str(limit), "--only", "prompts", "--prompt-lr", "0", "--encoder-tokens", "8",
        "--align-encoder-slots", str(fitted), "--validate-every", "1", "--validation-size", "1",
        "--export", str(exported)])
    assert result.exit_code == 0, result.output
    assert f"Encoder slots aligned on {fitted} train statements" in result.output
    network = load_network(exported, expect_llm=None).network
    assert network.config.encoder_tokens == 8
    fit, held_out = _alignment_statements(load_training_data(limit=limit), fitted, 0)
    assert len(fit) == fitted and not set(fit) & set(held_out)
    reference = new_medrek(encoder, llm, encoder_tokens=8)
    random_start = reference.prompt_encoder.from_encoder.weight.detach().clone()
    align_encoder_slots(reference, encoder, llm, tok, fit, held_out)
    expected = reference.prompt_encoder.from_encoder.weight.detach()
    shipped = network.prompt_encoder.from_encoder.weight.detach().float()
    # bf16 storage: relative rounding of 2^-8 per entry.
    assert torch.allclose(shipped, expected, rtol=1e-2, atol=1e-3 * expected.abs().max().item())
    assert not torch.allclose(shipped, random_start, rtol=1e-2, atol=1e-3 * expected.abs().max().item())
