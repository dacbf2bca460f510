"""Hyper-parameter loading: families, overrides, and the one-sentence errors for bad input."""

from __future__ import annotations

import dataclasses
import json

import pytest

from editors.hparams import (
    EDITOR_HPARAMS,
    AlphaEditHparams,
    FtHparams,
    HparamsError,
    MemitHparams,
    MergeHparams,
    PmetHparams,
    load_hparams,
    parse_override_args,
)
from lm.adapters import UnsupportedArchitecture


@pytest.mark.parametrize("editor", sorted(EDITOR_HPARAMS))
@pytest.mark.parametrize("model_type", ["gpt2", "gptj", "llama"])
def test_every_shipped_file_loads_for_every_family(editor, model_type):
    hparams = load_hparams(editor, model_type)
    assert json.loads(json.dumps(hparams.to_dict())) == hparams.to_dict()


def test_reference_values_for_gpt2_and_gptj():
    gpt2 = load_hparams("memit", "gpt2")
    assert isinstance(gpt2, MemitHparams)
    assert gpt2.layers == (13, 14, 15, 16, 17) and gpt2.last_layer == 17
    assert (gpt2.v_num_grad_steps, gpt2.clamp_norm_factor) == (20, 0.75)
    assert gpt2.mom2_update_weight == 20000.0
    gptj = load_hparams("memit", "gptj")
    assert gptj.layers == (3, 4, 5, 6, 7, 8) and gptj.mom2_update_weight == 15000.0
    pmet = load_hparams("pmet", "gptj")
    assert isinstance(pmet, PmetHparams)
    assert (pmet.v_num_grad_steps, pmet.v_lr, pmet.kl_factor) == (30, 0.2, 1.0)
    assert pmet.mom2_update_weight == 6000.0
    assert pmet.spread_rule == "sqrt" and pmet.argmax_nll_weight == 0.1


@pytest.mark.parametrize("model_type", ["llama", "mistral", "qwen2", "gemma"])
def test_llama_family_shares_one_table(model_type):
    hparams = load_hparams("memit", model_type)
    assert hparams.layers == tuple(range(3, 8))
    assert hparams.mom2_update_weight == 3000.0
    assert hparams.clamp_norm_factor == 4.0 and hparams.v_weight_decay == 1e-3


def test_editor_specific_classes_and_defaults():
    assert isinstance(load_hparams("memit-merge", "llama"), MergeHparams)
    alpha = load_hparams("AlphaEdit", "gpt2")
    assert isinstance(alpha, AlphaEditHparams)
    assert (alpha.nullspace_rule, alpha.nullspace_energy, alpha.alpha) == ("energy", 0.01, 10.0)
    assert alpha.nullspace_threshold == 2e-2  # the reference's absolute rule, by option
    assert isinstance(load_hparams("ft_l", "gptj"), FtHparams)


def test_hparams_are_frozen():
    hparams = load_hparams("memit", "gpt2")
    with pytest.raises(dataclasses.FrozenInstanceError):
        hparams.v_lr = 1.0


def test_cli_overrides_are_parsed_and_typed():
    arguments = ["v_lr=0.3", "layers=2-4", "mom2_update_weight=1e3", "key_token=prompt_last"]
    overrides = parse_override_args(arguments)
    hparams = load_hparams("memit", "llama", overrides)
    assert hparams.v_lr == 0.3
    assert hparams.layers == (2, 3, 4)
    assert hparams.mom2_update_weight == 1000.0
    assert hparams.key_token == "prompt_last"
    assert load_hparams("memit", "llama", {"layers": "3,5,7"}).layers == (3, 5, 7)
    assert load_hparams("memit", "llama", {"layers": "[6]"}).layers == (6,)
    assert load_hparams("memit", "llama", {"v_num_grad_steps": 40}).v_num_grad_steps == 40
    assert load_hparams("memit", "llama", {"v_lr": 1}).v_lr == 1.0


def test_unknown_override_key():
    with pytest.raises(HparamsError, match=r"^Override 'v_lrr=0\.3': unknown key 'v_lrr'"):
        load_hparams("memit", "llama", {"v_lrr": "0.3"})


@pytest.mark.parametrize(
    "key, value, rule",
    [
        ("v_num_grad_steps", "1.5", "an integer, got '1.5'."),
        ("v_num_grad_steps", True, "an integer, got True."),
        ("v_lr", "fast", "a finite number, got 'fast'."),
        ("v_lr", "nan", "a finite number, got nan."),
        ("v_lr", "-1", "positive."),
        ("layers", "a-b", "a list of integers, got 'a-b'."),
        ("layers", "8,2", "a non-empty, strictly increasing list of layer indices >= 0."),
        ("key_token", "first", "one of 'subject_last', 'prompt_last', got 'first'."),
    ],
)
def test_bad_override_values_give_one_clear_sentence(key, value, rule):
    expected = f"Override '{key}={value}': key '{key}' must be {rule}"
    with pytest.raises(HparamsError) as caught:
        load_hparams("memit", "llama", {key: value})
    assert str(caught.value) == expected


def test_layers_beyond_the_model_are_refused():
    load_hparams("memit", "llama").check_fits(num_layers=30)
    load_hparams("ft_l", "gptj").check_fits(num_layers=28)
    with pytest.raises(HparamsError, match="Layer 13 is out of range for a model with 12 layers"):
        load_hparams("memit", "gpt2").check_fits(num_layers=12)
    with pytest.raises(HparamsError, match="Layer 21 is out of range"):
        load_hparams("ft_l", "gptj").check_fits(num_layers=12)


def test_malformed_override_argument():
    with pytest.raises(HparamsError, match="not of the form key=value"):
        parse_override_args(["v_lr"])


def test_unknown_editor_and_model_type():
    with pytest.raises(HparamsError, match="No hyper-parameters for editor 'rome'"):
        load_hparams("rome", "llama")
    with pytest.raises(UnsupportedArchitecture, match="No architecture adapter for model_type 'bert'"):
        load_hparams("memit", "bert")


VALID_FILE = """[llama]
tuned_on = { model = "tiny", benchmark = "counterfact" }
layers = [2, 3]
v_num_grad_steps = 5
v_lr = 0.5
v_weight_decay = 1e-3
clamp_norm_factor = 4
kl_factor = 0.0625
mom2_update_weight = 1500
"""


def test_integers_widen_to_float_fields(tmp_path):
    (tmp_path / "memit.toml").write_text(VALID_FILE)
    hparams = load_hparams("memit", "llama", hparams_dir=tmp_path)
    assert hparams.clamp_norm_factor == 4.0 and isinstance(hparams.clamp_norm_factor, float)


@pytest.mark.parametrize(
    "old, new, message",
    [
        ("v_lr = 0.5", "v_lr = 0.5\nv_lrr = 0.1", r"\[llama\]: unknown key 'v_lrr'"),
        ("v_lr = 0.5", 'v_lr = "x"', r"\[llama\]: key 'v_lr' must be a finite number, got 'x'"),
        ("steps = 5", "steps = 5.0", "key 'v_num_grad_steps' must be an integer, got 5.0"),
        ("steps = 5", "steps = true", "key 'v_num_grad_steps' must be an integer, got True"),
        ("v_lr = 0.5\n", "", r"\[llama\]: missing key 'v_lr'"),
        ("[2, 3]", "[]", r"\[llama\]: key 'layers' must be a non-empty"),
        ("[llama]", "[lama]", "unknown top-level key 'lama'"),
        ("v_lr = 0.5", "v_lr = = 0.5", "not valid TOML"),
    ],
)
def test_bad_files_name_file_and_key(tmp_path, old, new, message):
    (tmp_path / "memit.toml").write_text(VALID_FILE.replace(old, new))
    with pytest.raises(HparamsError, match=message) as caught:
        load_hparams("memit", "llama", hparams_dir=tmp_path)
    assert str(tmp_path / "memit.toml") in str(caught.value)


def test_missing_family_table_and_file(tmp_path):
    (tmp_path / "memit.toml").write_text("[gpt2]\nv_lr = 1\n")
    with pytest.raises(HparamsError, match=r"no \[llama\] table for model type 'qwen2'"):
        load_hparams("memit", "qwen2", hparams_dir=tmp_path)
    with pytest.raises(HparamsError, match="not found"):
        load_hparams("pmet", "qwen2", hparams_dir=tmp_path)



BENCHMARK_TABLE = """
[llama.medcfpp]
tuned_on = { model = "tiny", benchmark = "medcfpp", split = "train" }
benchmarks = ["medcfpp", "medcf"]
v_lr = 0.9
"""


def test_a_benchmark_table_applies_to_the_benchmarks_it_serves(tmp_path):
    from editors.hparams import shipped_defaults

    (tmp_path / "memit.toml").write_text(VALID_FILE + BENCHMARK_TABLE)
    assert load_hparams("memit", "llama", hparams_dir=tmp_path).v_lr == 0.5
    assert load_hparams("memit", "llama", benchmark="counterfact", hparams_dir=tmp_path).v_lr == 0.5
    for benchmark in ("medcfpp", "medcf"):
        assert load_hparams("memit", "llama", benchmark=benchmark, hparams_dir=tmp_path).v_lr == 0.9
    assert shipped_defaults("memit", "llama", "medcf", tmp_path).tuned_on.benchmark == "medcfpp"
    assert shipped_defaults("memit", "llama", "zsre", tmp_path).tuned_on.benchmark == "counterfact"


def test_every_table_must_say_where_it_was_tuned(tmp_path):
    (tmp_path / "memit.toml").write_text(VALID_FILE.replace('tuned_on = { model = "tiny", benchmark = "counterfact" }\n', ""))
    with pytest.raises(HparamsError, match=r"\[llama\]: 'tuned_on' must be a table naming the model and the benchmark"):
        load_hparams("memit", "llama", hparams_dir=tmp_path)
    (tmp_path / "memit.toml").write_text(VALID_FILE + BENCHMARK_TABLE.replace(
        'tuned_on = { model = "tiny", benchmark = "medcfpp", split = "train" }', 'tuned_on = { model = "tiny" }'))
    with pytest.raises(HparamsError, match=r"\[llama.medcfpp\]: 'tuned_on' must be a table"):
        load_hparams("memit", "llama", hparams_dir=tmp_path)


@pytest.mark.parametrize("editor", sorted(EDITOR_HPARAMS))
def test_every_shipped_table_names_model_and_benchmark(editor):
    import tomllib

    from editors.hparams import DEFAULT_HPARAMS_DIR

    document = tomllib.loads((DEFAULT_HPARAMS_DIR / f"{editor}.toml").read_text())
    for family, table in document.items():
        tables = [table] + [sub for sub in table.values() if isinstance(sub, dict) and sub is not table.get("tuned_on")]
        for each in tables:
            assert each["tuned_on"]["model"] and each["tuned_on"]["benchmark"], (editor, family)


def test_files_and_overrides_go_on_top_of_the_defaults_in_order(tmp_path):
    from editors.hparams_files import choose_hparams, read_hparams_file

    path = tmp_path / "mine.toml"
    path.write_text('editor = "memit"\ntuned_on = { model = "m", benchmark = "b" }\n[hparams]\nv_lr = 0.7\nlayers = [2, 3]\n')
    mine = read_hparams_file(path)
    chosen = choose_hparams("memit", "llama", {"layers": "4-6"}, file=mine)
    assert (chosen.hparams.v_lr, chosen.hparams.layers) == (0.7, (4, 5, 6))
    assert chosen.tuned_on.describe() == "m / b"
    assert chosen.sources[-2:] == (str(path), "Override")
    with pytest.raises(HparamsError, match="holds hyper-parameters for memit, not pmet"):
        choose_hparams("pmet", "llama", file=mine)


def test_the_merge_budget_setting_is_memit_budget_and_nothing_else():
    from editors.hparams_files import choose_hparams, read_hparams_file, setting_path

    memit = load_hparams("memit", "llama")
    merge = load_hparams("memit_merge", "llama")
    budget = choose_hparams("memit_merge", "llama", file=read_hparams_file(setting_path("memit_merge", "memit_budget")))
    assert (budget.hparams.shared_v_num_grad_steps, budget.hparams.shared_v_lr, budget.hparams.shared_clamp_norm_factor) \
        == (memit.v_num_grad_steps, memit.v_lr, memit.clamp_norm_factor)
    changed = {k for k, v in budget.hparams.to_dict().items() if merge.to_dict()[k] != v}
    assert changed == {"shared_v_num_grad_steps", "shared_v_lr", "shared_clamp_norm_factor"}


def test_the_tuned_elsewhere_note_names_editors_and_where_they_were_tuned():
    from editors.hparams import TunedOn
    from editors.hparams_files import ChosenHparams
    from editors.registry import tuned_elsewhere_note

    here = ChosenHparams(load_hparams("memit", "llama"), TunedOn("this", "counterfact", "abc"), ())
    there = ChosenHparams(load_hparams("pmet", "llama"), TunedOn("Llama-3-8B", "counterfact"), ())
    assert tuned_elsewhere_note({"memit": here}, "abc") is None
    note = tuned_elsewhere_note({"memit": here, "pmet": there}, "abc")
    assert note.count("\n") == 0 and "pmet were tuned on Llama-3-8B / counterfact" in note
    assert "editscope tune" in note and "memit" not in note.split("were")[0]
