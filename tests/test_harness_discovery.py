"""Editor discovery by name, and the `compare` line-up built on it (tiny model)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from rich.console import Console

import experiments.commands.compare as compare
import experiments.discovery as discovery
from cli import main
from editors.registry import editor_names
from experiments.commands.sweep import line_up
from experiments.discovery import EDITOR_NAMES, EditorUnavailable, build_editor
from experiments.identity import IdentityEditor
from lm.errors import UsageError


class NamedEditor(IdentityEditor):
    def __init__(self, name, model):
        self.name = name
        self.model = model


class MissingData(UsageError):
    """What an editor without its data (e.g. no checkpoint for this model) raises."""


def only_builds(monkeypatch, *buildable):
    """Editors of `buildable` build; every other name fails as an editor without its data would."""
    def make(name, model, *_, **__):  # the weight editors' hyper-parameter choice is not looked at
        if name not in buildable:
            raise MissingData(f"no checkpoint for {name}")
        return NamedEditor(name, model)

    monkeypatch.setattr(discovery, "make_named_editor", make)


def test_every_weight_editor_and_every_retrieval_editor_is_named():
    assert EDITOR_NAMES == (*editor_names(), "recipe", "medrek", "medrek_copy", "ike")


def test_the_full_line_up_builds_what_exists_and_says_why_the_rest_cannot(monkeypatch, tiny_llama):
    model, _ = tiny_llama
    only_builds(monkeypatch, "memit", "recipe")
    out = Console(record=True, width=300)
    lineup = line_up(None, model, out)
    assert list(lineup) == ["unedited", "memit", "recipe"]
    assert lineup["memit"].model is model
    said = out.export_text()
    for name in EDITOR_NAMES:
        if name not in ("memit", "recipe"):
            assert f"skipped {name}: Editor {name!r} cannot be built: MissingData: no checkpoint for {name}" in said


def test_build_editor_names_the_missing_editor(monkeypatch, tiny_llama):
    model, _ = tiny_llama
    only_builds(monkeypatch, "memit")
    assert build_editor("memit", model).name == "memit"
    with pytest.raises(EditorUnavailable, match="Editor 'rome' is not available: no registry knows an editor "
                                                r"called 'rome' \(buildable: alphaedit, ft_l, ike, medrek, "):
        build_editor("rome", model)
    with pytest.raises(EditorUnavailable, match="'medrek' cannot be built: MissingData: no checkpoint for medrek"):
        build_editor("medrek", model)


def test_compare_runs_the_unedited_baseline_and_skips_what_cannot_be_built(monkeypatch, tiny_llama,
                                                                           tmp_path, tmp_cache):
    only_builds(monkeypatch)
    monkeypatch.setattr(compare, "load", lambda name: tiny_llama)
    result = CliRunner().invoke(main, ["compare", "--batch", "3", "--workers", "1", "--fluency-prompts", "0",
                                       "--perplexity-tokens", "0", "--reports-dir", str(tmp_path)],
                                terminal_width=300)
    assert result.exit_code == 0, result.output
    assert "skipped memit: Editor 'memit' cannot be built: MissingData: no checkpoint for memit" in result.output
    assert "3 edits from medcfpp (test), batch 3" in result.output
    assert "unedited" in result.output and "100.0" in result.output  # locality of no edit


def test_a_named_editor_that_cannot_be_built_is_a_usage_error(monkeypatch, tiny_llama, tmp_path):
    only_builds(monkeypatch)
    monkeypatch.setattr(compare, "load", lambda name: tiny_llama)
    result = CliRunner().invoke(main, ["compare", "--batch", "3", "--workers", "1", "--editors", "memit",
                                       "--reports-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "Editor 'memit' cannot be built: MissingData: no checkpoint for memit" in result.output
    assert not tmp_path.exists() or not any(tmp_path.iterdir())
