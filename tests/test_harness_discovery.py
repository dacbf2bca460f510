"""Editor discovery by name, and the comparison scripts built on it (tiny model)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

import experiments.discovery as discovery
import experiments.scripts.medcfpp_table as medcfpp_table
import experiments.scripts.sequential_memit as sequential_memit
from editors.registry import editor_names
from experiments.discovery import EDITOR_NAMES, EditorUnavailable, build_editor, discover_editors
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
    def make(name, model):
        if name not in buildable:
            raise MissingData(f"no checkpoint for {name}")
        return NamedEditor(name, model)

    monkeypatch.setattr(discovery, "make_named_editor", make)


def test_every_weight_editor_and_every_retrieval_editor_is_named():
    assert EDITOR_NAMES == (*editor_names(), "recipe", "medrek", "medrek_copy", "ike")


def test_discovery_builds_what_exists_and_says_why_the_rest_cannot(monkeypatch, tiny_llama):
    model, _ = tiny_llama
    only_builds(monkeypatch, "memit", "recipe")
    lineup = discover_editors(model)
    assert [editor.name for editor in lineup.editors] == ["unedited", "memit", "recipe"]
    assert lineup.editors[1].model is model
    assert lineup.unavailable == {name: f"MissingData: no checkpoint for {name}"
                                  for name in EDITOR_NAMES if name not in ("memit", "recipe")}


def test_build_editor_names_the_missing_editor(monkeypatch, tiny_llama):
    model, _ = tiny_llama
    only_builds(monkeypatch, "memit")
    assert build_editor("memit", model).name == "memit"
    with pytest.raises(EditorUnavailable, match="Editor 'rome' is not available: no registry knows an editor "
                                                r"called 'rome' \(buildable: alphaedit, ft_l, ike, medrek, "):
        build_editor("rome", model)
    with pytest.raises(EditorUnavailable, match="'medrek' cannot be built: MissingData: no checkpoint for medrek"):
        build_editor("medrek", model)


def test_sequential_memit_script_fails_clearly_without_memit(monkeypatch, tiny_llama):
    only_builds(monkeypatch)
    monkeypatch.setattr(sequential_memit, "load", lambda name: tiny_llama)
    result = CliRunner().invoke(sequential_memit.main, [])
    assert result.exit_code == 2
    assert "Editor 'memit' cannot be built: MissingData: no checkpoint for memit" in result.output


def test_medcfpp_table_runs_the_unedited_baseline_and_lists_the_rest(monkeypatch, tiny_llama,
                                                                      tmp_cache):
    only_builds(monkeypatch)
    monkeypatch.setattr(medcfpp_table, "load", lambda name: tiny_llama)
    result = CliRunner().invoke(medcfpp_table.main, ["--edits", "3", "--quiet"],
                                terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "MedCF++ test, 3 edits in one batch" in result.output
    assert "unedited" in result.output and "100.0" in result.output  # locality of no edit
    assert "Not run (unavailable): memit (MissingData: no checkpoint for memit); pmet" in result.output


def test_medcfpp_table_runs_a_chosen_subset_and_refuses_unknown_names(monkeypatch, tiny_llama, tmp_cache):
    only_builds(monkeypatch, "memit")
    monkeypatch.setattr(medcfpp_table, "load", lambda name: tiny_llama)
    result = CliRunner().invoke(medcfpp_table.main, ["--edits", "2", "--quiet", "--editors", "ft_l"])
    assert result.exit_code == 0, result.output
    assert "unedited" in result.output and "memit" not in result.output
    assert "Not run (unavailable): ft_l (MissingData: no checkpoint for ft_l)." in result.output
    result = CliRunner().invoke(medcfpp_table.main, ["--edits", "2", "--editors", "rome"])
    assert result.exit_code == 2
    assert "Unknown editor rome in --editors" in result.output
