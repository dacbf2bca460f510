"""`tune` and `--hparams` end to end on a tiny 9-layer llama: the search runs the editor through
the harness on train records, resumes from its trials file, writes a file `--hparams` accepts,
and every usage error is one sentence with exit code 2."""

from __future__ import annotations

import gzip
import json

import pytest
from click.testing import CliRunner
from tiny_models import tiny_model

from cli import main
from data.benchmarks import shipped_file
from editors.hparams_files import read_hparams_file
from experiments.commands import compare, tune

# Small enough for a tiny model: two Adam steps, one context prefix, 300 covariance tokens.
START = """editor = "memit"
[hparams]
v_num_grad_steps = 2
n_templates = 1
template_len = 4
mom2_tokens = 300
v_dtype = "float32"
"""


@pytest.fixture
def tiny(monkeypatch, tiny_tok, tmp_cache):
    model = tiny_model("llama", seed=2, layers=9)
    for module in (tune, compare):
        monkeypatch.setattr(module, "load", lambda name: (model, tiny_tok), raising=False)
    monkeypatch.setattr("lm.loading.load", lambda name, **_: (model, tiny_tok))
    return model, tiny_tok


def invoke(args):
    return CliRunner().invoke(main, args)


def test_tune_writes_a_file_compare_accepts_and_resumes_from_its_trials(tiny, tmp_path):
    start = tmp_path / "start.toml"
    start.write_text(START)
    out = tmp_path / "memit-tuned.toml"
    args = ["tune", "memit", "--benchmark", "counterfact", "--records", "2", "--start", str(start),
            "--out", str(out), "--quiet"]
    first = invoke(args)
    assert first.exit_code == 0, first.output
    tuned = read_hparams_file(out)
    assert tuned.editor == "memit" and tuned.tuned_on.benchmark == "counterfact"
    assert tuned.tuned_on.details["split"] == "train" and tuned.values["v_num_grad_steps"] in (2, 4)
    trials = json.loads(out.with_name(out.name + ".trials.json").read_text())["trials"]
    # One coordinate pass: the start, then every other candidate of each axis (λ 2, layers 4, lr 2, steps 1).
    assert len(trials) == 10
    assert all(set(t["metrics"]) >= {"efficacy_accuracy", "locality_mean"} for t in trials.values())

    # A rerun finds every trial in the file and runs none.
    calls = []
    original = tune._run_trial
    tune._run_trial = lambda *a: calls.append(a) or original(*a)
    try:
        again = invoke(args)
    finally:
        tune._run_trial = original
    assert again.exit_code == 0, again.output
    assert calls == [] and read_hparams_file(out).values == tuned.values

    reports = tmp_path / "reports"
    result = invoke(["compare", "--editors", "memit", "--benchmark", "counterfact", "--batch", "2",
                     "--hparams", str(out), "--fluency-prompts", "0", "--perplexity-tokens", "0", "--workers", "1",
                     "--json", "--reports-dir", str(reports)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output[result.output.index("{"):])
    assert report["arguments"]["hparams"] == [str(out)]
    (memit,) = [run for run in report["runs"] if run["editor"] == "memit"]
    assert memit["hparams"]["layers"] == list(tuned.values["layers"])


@pytest.mark.parametrize("args, sentence", [
    (["tune", "memit", "--benchmark", "medcfpp", "--split", "test"], "tune never uses test records"),
    (["tune", "medrek", "--benchmark", "medcfpp"], "tune works on the weight editors"),
    (["tune", "memit", "--benchmark", "counterfact", "--split", "valid"], "counterfact has no 'valid' split"),
    (["compare", "--editors", "pmet", "--hparams", "{memit}"], "holds hyper-parameters for memit, which this run"),
    (["compare", "--hparams", "{bad_key}"], "unknown key 'v_lrr'"),
    (["compare", "--hparams", "{bad_type}"], "key 'v_lr' must be a finite number, got 'fast'"),
    (["compare", "--hparams", "{no_editor}"], "'editor' must name one of memit"),
    (["compare", "--hparams", "memit_merge@nope"], "No setting 'memit_merge@nope'"),
    (["compare", "--editors", "memit_merge@nope"], "No setting 'memit_merge@nope'"),
    (["edit", "--requests", "{memit}", "--editor", "pmet", "--save", "{tmp}/x", "--hparams", "{memit}"],
     "holds hyper-parameters for memit, which this run does not include (editors: pmet)"),
])
def test_usage_errors_are_one_sentence_and_exit_2(tmp_path, args, sentence):
    files = {"memit": 'editor = "memit"\n[hparams]\nv_lr = 0.3\n',
             "bad_key": 'editor = "memit"\n[hparams]\nv_lrr = 0.3\n',
             "bad_type": 'editor = "memit"\n[hparams]\nv_lr = "fast"\n',
             "no_editor": '[hparams]\nv_lr = 0.3\n'}
    paths = {name: tmp_path / f"{name}.toml" for name in files}
    for name, text in files.items():
        paths[name].write_text(text)
    filled = [arg.format(tmp=tmp_path, **paths) for arg in args]
    if filled[0] == "edit":  # a valid requests file, so the refusal is the hyper-parameters'
        requests = tmp_path / "edits.json"
        requests.write_text(json.dumps(json.loads(gzip.decompress(shipped_file("counterfact", "test").read_bytes()))[:1]))
        filled[filled.index("--requests") + 1] = str(requests)
    result = invoke(filled)
    assert result.exit_code == 2, result.output
    assert sentence in result.output
    assert result.output.count("Error") == 1


def test_a_named_setting_is_its_own_row_with_its_own_values(tiny):
    from rich.console import Console

    from experiments.commands.sweep import line_up

    model, _ = tiny
    lineup = line_up(("memit", "memit_merge", "memit_merge@memit_budget"), model, Console(quiet=True))
    own, budget = lineup["memit_merge"], lineup["memit_merge@memit_budget"]
    assert budget.name == "memit_merge@memit_budget" and own.name == "memit_merge"
    memit = lineup["memit"].hparams
    assert (budget.hparams.shared_v_num_grad_steps, budget.hparams.shared_v_lr) == (memit.v_num_grad_steps, memit.v_lr)
    assert own.hparams.shared_v_num_grad_steps != memit.v_num_grad_steps


def test_the_note_appears_for_a_model_the_defaults_were_not_tuned_on(tiny):
    from rich.console import Console

    from experiments.commands.sweep import line_up

    model, _ = tiny
    out = Console(record=True, width=400)
    line_up(("memit",), model, out)
    text = out.export_text()
    assert text.count("were tuned on") == 1 and "editscope tune" in text
