"""Every editor on tiny random models of the llama, qwen2, gpt2 and gptj families.

The models are built from configs and the tokenizer is a small byte-level BPE trained here on
the shipped corpus, so nothing is downloaded. Covariances come from a few hundred corpus tokens
through `second_moments` with a temporary cache root. These tests check plumbing (shapes, module
names, orientation, hooks, exact undo, refusals), not editing quality.
"""

from __future__ import annotations

import math

import pytest
import torch

from covariance.stats import SecondMoment
from data.corpus import corpus_text
from editors.akd import batch_keys
from editors.applied import WeightEdit, trial_deltas
from editors.covariances import CorpusCovariance, GivenCovariance
from editors.keys import LayerwiseKeys, request_keys, request_sites
from editors.merge import key_distance_groups
from data.requests import EditRequest, EditRequestError
from editors.protocol import Applied, EditError, Editor
from editors.registry import EDITORS, UnknownEditor, make_editor
from editors.templates import context_prefixes
from editors.upper import SplitBatch, base_model, capture_upper_state, run_upper
from lm.adapters import adapter_for
from metrics.keys import average_key_distance_per_layer

FAMILIES = ("llama", "qwen2", "gpt2", "gptj")
# Small budgets: these tests check that every path runs, not that edits succeed.
FAST = {"layers": "1-2", "v_num_grad_steps": 4, "n_templates": 2, "template_len": 4, "mom2_tokens": 300}
FAST_BY_EDITOR = {
    "memit": FAST,
    "pmet": FAST,
    "alphaedit": FAST,
    "memit_merge": {**FAST, "shared_v_num_grad_steps": 4},
    "ft_l": {"layer": 2, "steps": 3},
}

REQUESTS = (
    EditRequest(prompt="The capital of France is", subject="France", target_new="Rome", target_true="Paris"),
    EditRequest(prompt="Water boils at a temperature of", subject="Water", target_new="fifty degrees"),
    EditRequest(prompt="The novel was written in English by", subject="novel", target_new="John Smith"),
)


@pytest.fixture(scope="module")
def tok():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    lines = [line for line in corpus_text().splitlines() if line.strip()][:400]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<eos>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    bpe.train_from_iterator(lines, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<eos>")


def tiny_config(family: str, vocab: int):
    from transformers import GPT2Config, GPTJConfig, LlamaConfig, Qwen2Config

    common = dict(vocab_size=vocab, bos_token_id=0, eos_token_id=0)
    if family in ("llama", "qwen2"):
        config = LlamaConfig if family == "llama" else Qwen2Config
        return config(hidden_size=32, intermediate_size=48, num_hidden_layers=4, num_attention_heads=4,
                      num_key_value_heads=2, max_position_embeddings=512, **common)
    if family == "gpt2":
        return GPT2Config(n_embd=32, n_layer=4, n_head=4, n_positions=512, **common)
    return GPTJConfig(n_embd=32, n_layer=4, n_head=4, n_positions=512, rotary_dim=4, **common)


@pytest.fixture(scope="module", params=FAMILIES)
def tiny(request, tok):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(tiny_config(request.param, len(tok))).eval()
    model.requires_grad_(False)
    return model


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EDITSCOPE_CACHE", str(tmp_path))
    return tmp_path


def snapshot(model) -> dict[str, torch.Tensor]:
    return {name: tensor.clone() for name, tensor in model.state_dict().items()}


def assert_unchanged(model, before: dict[str, torch.Tensor]) -> None:
    after = model.state_dict()
    assert all(torch.equal(before[name], after[name]) for name in before)


@pytest.mark.parametrize("editor_name", list(EDITORS))
def test_every_editor_edits_and_undoes_exactly_on_every_family(tiny, tok, cache, editor_name):
    editor = make_editor(editor_name, tiny, FAST_BY_EDITOR[editor_name], cache_root=cache)
    before = snapshot(tiny)

    stages = []
    editor.progress = lambda stage, done, total: stages.append(stage)
    applied = editor.apply(tiny, tok, REQUESTS)

    assert isinstance(editor, Editor) and isinstance(applied, Applied)
    assert stages  # progress goes through the callback (library code never prints)
    adapter = adapter_for(tiny)
    edited = [name for name in before if not torch.equal(before[name], tiny.state_dict()[name])]
    layers = (2,) if editor_name == "ft_l" else (1, 2)
    assert sorted(edited) == sorted(f"{adapter.mlp_out_name(layer)}.weight" for layer in layers)
    assert applied.info["editor"] == editor.name
    scores = applied.scorer.score([r.prompt for r in REQUESTS], [r.target_new for r in REQUESTS])
    assert all(math.isfinite(s.sum_logprob) for s in scores)
    applied.undo()
    assert_unchanged(tiny, before)


@pytest.mark.parametrize("editor_name", list(EDITORS))
def test_every_editor_edits_a_bfloat16_model_in_place_and_undoes_exactly(tok, cache, editor_name):
    from transformers import AutoModelForCausalLM

    # What `--load-dtype bfloat16` gives the editors: weights in bf16, no float32 copy kept.
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(tiny_config("llama", len(tok)), dtype=torch.bfloat16).eval()
    model.requires_grad_(False)
    editor = make_editor(editor_name, model, FAST_BY_EDITOR[editor_name], cache_root=cache)
    before = snapshot(model)
    applied = editor.apply(model, tok, REQUESTS)
    after = model.state_dict()
    edited = [name for name in before if not torch.equal(before[name], after[name])]
    assert edited and all(after[name].dtype == torch.bfloat16 for name in edited)
    scores = applied.scorer.score([r.prompt for r in REQUESTS], [r.target_new for r in REQUESTS])
    assert all(math.isfinite(s.sum_logprob) for s in scores)
    applied.undo()
    assert_unchanged(model, before)


def test_upper_run_matches_the_full_forward(tiny):
    adapter = adapter_for(tiny)
    prefixes, suffixes = [[5, 6, 7], [8], []], [[9, 10], [11, 12, 13], [14]]
    batch = SplitBatch.build(prefixes, suffixes, pad_id=0)
    for start in (0, 2):
        upper = run_upper(tiny, adapter, capture_upper_state(tiny, adapter, batch, start))
        for row, (prefix, suffix) in enumerate(zip(prefixes, suffixes)):
            with torch.no_grad():
                alone = base_model(tiny)(input_ids=torch.tensor([prefix + suffix])).last_hidden_state
            torch.testing.assert_close(upper[row, : len(suffix)], alone[0, len(prefix) :], atol=1e-5, rtol=1e-4)


def test_layerwise_keys_match_a_fresh_read_of_the_partially_edited_model(tiny, tok):
    adapter = adapter_for(tiny)
    sites = request_sites(tok, REQUESTS, "subject_last", ("Once upon a time. ",))
    output = adapter.block_name(3)
    reader = LayerwiseKeys(tiny, sites, output, 3)
    generator = torch.Generator().manual_seed(0)
    with trial_deltas(tiny) as add:
        for layer in (1, 2, 3):
            keys, current = reader.read(layer)
            fresh_keys, fresh = request_keys(tiny, sites, [layer], {"out": output}, stop_layer=3)
            torch.testing.assert_close(keys, fresh_keys[layer], atol=1e-5, rtol=1e-4)
            torch.testing.assert_close(current, fresh["out"], atol=1e-5, rtol=1e-4)
            weight = adapter.mlp_out_weight(tiny, layer)
            add(f"{adapter.mlp_out_name(layer)}.weight", torch.randn(weight.shape, generator=generator) * 0.5)


def test_batched_value_optimisation_equals_one_request_at_a_time(tiny, tok, cache):
    from editors.hparams import load_hparams
    from editors.kv_editor import prepare_batch
    from editors.values import ValueOptions, ValueProblem, optimise_values

    hparams = load_hparams("memit", tiny.config.model_type, {**FAST, "v_dtype": "float32", "v_lr": 0.05})
    batch = prepare_batch(tiny, tok, REQUESTS, hparams)
    site = (adapter_for(tiny).block_name(2),)
    options = ValueOptions.from_hparams(hparams)
    problem = ValueProblem(2, batch.sites, batch.essence, batch.targets, [[0], [1], [2]], site)
    together = optimise_values(tiny, problem, options)
    for index in range(len(REQUESTS)):
        alone = optimise_values(tiny, problem.with_groups([[index]]), options)
        torch.testing.assert_close(together.targets(site[0])[index], alone.targets(site[0])[0], atol=1e-4, rtol=1e-4)
        assert together.updates[index] == alone.updates[0]


def test_sequential_edits_undo_in_reverse_order(tiny, tok, cache):
    editor = make_editor("alphaedit", tiny, FAST, cache_root=cache)
    before = snapshot(tiny)
    first = editor.apply(tiny, tok, REQUESTS[:2])
    assert set(editor._memory) == {1, 2}
    second = editor.apply(tiny, tok, REQUESTS[2:])
    second.undo()
    first.undo()
    assert_unchanged(tiny, before)
    assert editor._memory == {}  # the sequential memory forgets undone batches


def test_a_non_finite_update_leaves_the_model_untouched(tiny, tok, cache):
    d_ff = adapter_for(tiny).widths(tiny)[1]
    poisoned = SecondMoment(layer=1, total=torch.full((d_ff, d_ff), float("nan"), dtype=torch.float64), tokens=1)
    healthy = SecondMoment(layer=2, total=torch.eye(d_ff, dtype=torch.float64), tokens=1)
    editor = make_editor("memit", tiny, FAST, covariance=GivenCovariance({1: poisoned, 2: healthy}), cache_root=cache)
    before = snapshot(tiny)
    with pytest.raises(EditError, match="update for layer 1 .* not finite; nothing was applied"):
        editor.apply(tiny, tok, REQUESTS)
    assert_unchanged(tiny, before)


def test_weight_edit_checks_every_delta_before_adding_any(tiny):
    adapter = adapter_for(tiny)
    names = [f"{adapter.mlp_out_name(layer)}.weight" for layer in (0, 1)]
    params = dict(tiny.named_parameters())
    deltas = {names[0]: torch.ones_like(params[names[0]]), names[1]: torch.full_like(params[names[1]], float("inf"))}
    before = snapshot(tiny)
    with pytest.raises(EditError, match=f"update for {names[1]} is not finite"):
        WeightEdit.apply(tiny, None, deltas)
    assert_unchanged(tiny, before)
    with trial_deltas(tiny) as add:
        add(names[0], torch.full_like(params[names[0]], 0.1))
        assert not torch.equal(params[names[0]], before[names[0]])
    assert_unchanged(tiny, before)


@pytest.mark.parametrize(
    "request_, message",
    [
        (EditRequest(prompt="The capital of France is", subject="Spain", target_new="Rome"),
         "Request 1: subject 'Spain' does not occur in prompt"),
        (EditRequest(prompt="The capital of France is", subject="France", target_new="  "),
         "Request 1: field 'target_new' is empty"),
    ],
)
def test_bad_requests_are_refused_by_index_with_nothing_applied(tiny, tok, cache, request_, message):
    editor = make_editor("memit", tiny, FAST, cache_root=cache)
    before = snapshot(tiny)
    with pytest.raises(EditRequestError, match=message):
        editor.apply(tiny, tok, [REQUESTS[0], request_])
    assert_unchanged(tiny, before)


def test_missing_covariance_without_a_corpus_is_one_sentence(tiny, tok, cache):
    no_corpus = CorpusCovariance(corpus=str(cache / "absent.txt"), token_budget=300, cache_root=cache / "cov")
    editor = make_editor("memit", tiny, FAST, covariance=no_corpus, cache_root=cache)
    before = snapshot(tiny)
    with pytest.raises(EditError, match=r"^No covariance for layers 1, 2 of this batch: .*nothing was applied\.$"):
        editor.apply(tiny, tok, REQUESTS)
    given_one_layer = GivenCovariance({1: SecondMoment(1, torch.eye(48, dtype=torch.float64), 1)})
    with pytest.raises(EditError, match="No covariance for layers 2 of this batch and no corpus"):
        make_editor("memit", tiny, FAST, covariance=given_one_layer, cache_root=cache).apply(tiny, tok, REQUESTS)
    assert_unchanged(tiny, before)


def test_unknown_editor_names_the_choices(tiny):
    with pytest.raises(UnknownEditor, match="Unknown editor 'rome'; choose one of memit, pmet"):
        make_editor("rome", tiny)


def test_context_prefixes_are_seeded_and_cached(tiny, tok, cache):
    first = context_prefixes(tiny, tok, count=3, length=5, seed=1)
    assert len(first) == 3 and all(p.endswith(". ") for p in first)
    assert len(list((cache / "templates").glob("*.json"))) == 1
    assert context_prefixes(tiny, tok, count=3, length=5, seed=1) == first
    from editors.templates import generate_prefixes

    assert generate_prefixes(tiny, tok, 3, 5, seed=1) == first  # regenerating gives the same text


def test_akd_is_zero_for_one_subject_and_positive_otherwise(tiny, tok):
    same = [
        EditRequest(prompt="John Smith was born in", subject="John Smith", target_new="Rome"),
        EditRequest(prompt="John Smith works as a", subject="John Smith", target_new="baker"),
        EditRequest(prompt="John Smith speaks", subject="John Smith", target_new="French"),
    ]
    distinct = [EditRequest(prompt=r.prompt.replace("John Smith", name), subject=name, target_new=r.target_new)
                for r, name in zip(same, ("Mary Jones", "The river", "Water"))]
    assert all(value < 1e-5 for value in average_key_distance_per_layer(batch_keys(tiny, tok, same, [1, 2])).values())
    assert all(value > 1e-3 for value in average_key_distance_per_layer(batch_keys(tiny, tok, distinct, [1, 2])).values())
    keys = batch_keys(tiny, tok, same, [2])
    assert keys[2].shape == (3, adapter_for(tiny).widths(tiny)[1])


def test_prompt_last_keys_sit_on_the_last_prompt_token(tok):
    sites = request_sites(tok, REQUESTS[:1], "prompt_last", ("Once upon a time. ",))
    assert [s.position for s in sites[0]] == [len(s.ids) - 1 for s in sites[0]]
    subject_sites = request_sites(tok, REQUESTS[:1], "subject_last", ("France. ",))
    prefixed = subject_sites[0][1]
    # The key is read at the subject inside the prompt, not at "France" in the prefix.
    assert tok.decode(prefixed.ids[: prefixed.position + 1]).endswith("The capital of France")


def test_key_distance_groups_are_single_linkage_components():
    keys = torch.tensor([[0.0, 10.0], [0.1, 10.0], [10.0, 0.0], [0.2, 10.0], [10.0, 0.05]])
    assert key_distance_groups(keys, threshold=0.02) == [[0, 1, 3], [2, 4]]
    assert key_distance_groups(keys, threshold=0.0) == [[0], [1], [2], [3], [4]]


def test_merge_shares_one_value_per_subject(tiny, tok, cache):
    same = [
        EditRequest(prompt="John Smith was born in", subject="John Smith", target_new="Rome"),
        EditRequest(prompt="John Smith works as a", subject="John Smith", target_new="baker"),
        REQUESTS[0],
    ]
    for grouping in ("subject", "key_distance"):
        editor = make_editor("memit_merge", tiny, {**FAST_BY_EDITOR["memit_merge"], "grouping": grouping},
                             cache_root=cache)
        applied = editor.apply(tiny, tok, same)
        assert applied.info["group_sizes"][0] == 2, grouping
        applied.undo()


def test_key_value_editors_agree_on_one_request_when_configured_alike(tiny, tok, cache):
    """MEMIT and MEMIT-Merge are the same algorithm on distinct subjects."""
    before, deltas = snapshot(tiny), []
    for name in ("memit", "memit_merge"):
        applied = make_editor(name, tiny, FAST_BY_EDITOR[name], cache_root=cache).apply(tiny, tok, REQUESTS)
        state = tiny.state_dict()
        deltas.append({n: state[n] - before[n] for n in applied.edited_parameters})
        applied.undo()
    for name in deltas[0]:
        torch.testing.assert_close(deltas[0][name], deltas[1][name])



def test_ft_l_change_equals_adam_on_the_weight_itself(tiny, tok, cache):
    """FT-L trains a float32 change through a hook; that must take exactly the steps of Adam on
    the weight clamped around its original (the textbook FT-L), in both weight orientations."""
    import torch.nn.functional as F

    model = tiny
    hp = {"layer": 2, "steps": 3, "lr": 1e-2, "norm_constraint": 2e-2, "dtype": "float32"}
    applied = make_editor("ft_l", model, hp).apply(model, tok, REQUESTS[:2])
    adapter = adapter_for(model)
    weight = adapter.mlp_out_weight(model, 2)
    got = weight.detach().clone()
    applied.undo()

    original = weight.detach().clone()
    prompts = [tok(r.prompt)["input_ids"] for r in REQUESTS[:2]]
    targets = [tok(" " + r.target_new, add_special_tokens=False)["input_ids"] for r in REQUESTS[:2]]
    try:
        weight.requires_grad_(True)
        optimiser = torch.optim.Adam([weight], lr=hp["lr"])
        for _ in range(hp["steps"]):
            loss = 0.0
            for prompt, target in zip(prompts, targets):
                logits = model(torch.tensor([prompt + target[:-1]])).logits[0, len(prompt) - 1 :]
                loss = loss + F.cross_entropy(logits, torch.tensor(target)) / len(prompts)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            with torch.no_grad():
                weight.copy_(torch.clamp(weight, original - hp["norm_constraint"], original + hp["norm_constraint"]))
        expected = weight.detach().clone()
    finally:
        weight.requires_grad_(False)
        with torch.no_grad():
            weight.copy_(original)
    assert not torch.equal(got, original)  # the edit did change the weight
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
