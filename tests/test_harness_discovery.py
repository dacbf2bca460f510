"""Editor discovery from registries, and the comparison scripts built on it (tiny model)."""

from __future__ import annotations

import importlib.machinery
import sys
import types

import pytest
from click.testing import CliRunner

import experiments.discovery as discovery
import experiments.scripts.medcfpp_table as medcfpp_table
import experiments.scripts.sequential_memit as sequential_memit
from experiments.discovery import EditorUnavailable, build_editor, discover_editors
from experiments.identity import IdentityEditor


class NamedEditor(IdentityEditor):
    def __init__(self, name, **received):
        self.name = name
        self.received = received


def fake_registry(monkeypatch, module_name, **attributes):
    module = types.ModuleType(module_name)
    module.__spec__ = importlib.machinery.ModuleSpec(module_name, None)
    for key, value in attributes.items():
        setattr(module, key, value)
    monkeypatch.setitem(sys.modules, module_name, module)


@pytest.fixture
def registries(monkeypatch):
    """Two fake registries in place of the real ones, whatever the real ones hold today."""
    monkeypatch.setattr(discovery, "REGISTRIES", {
        "fake_locate": ("memit", "pmet", "ft_l"),
        "fake_retrieval": ("recipe", "medrek"),
    })

    def broken(model, tok):
        raise RuntimeError("no covariance statistics")

    fake_registry(monkeypatch, "fake_locate", EDITORS={
        "memit": lambda model, tok: NamedEditor("memit", model=model, tok=tok),
        "pmet": broken,
    })
    # As editors.registry does: EDITORS holds classes that need hyper-parameters, and
    # make_editor builds one for a model, so make_editor must be the one called.
    fake_registry(monkeypatch, "fake_retrieval", EDITORS={"recipe": NamedEditor},
                  make_editor=lambda name, model_type, checkpoint=None:
                  NamedEditor(name, model_type=model_type))


def test_discovery_builds_what_exists_and_says_why_the_rest_cannot(registries, tiny_llama):
    model, tok = tiny_llama
    lineup = discover_editors(model, tok)
    assert [editor.name for editor in lineup.editors] == ["unedited", "memit", "recipe"]
    # Factories get exactly the arguments they declare.
    assert lineup.editors[1].received == {"model": model, "tok": tok}
    assert lineup.editors[2].received == {"model_type": "llama"}
    assert lineup.unavailable == {
        "pmet": "RuntimeError: no covariance statistics",
        "ft_l": "no registry provides it yet",
        "medrek": "no registry provides it yet",
    }


def test_a_registry_that_fails_to_import_is_reported(monkeypatch, tmp_path, tiny_llama):
    (tmp_path / "half_written_registry.py").write_text("raise ImportError('not finished')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(discovery, "REGISTRIES", {"half_written_registry": ("memit",)})
    lineup = discover_editors(*tiny_llama)
    assert [editor.name for editor in lineup.editors] == ["unedited"]
    assert lineup.unavailable == {
        "memit": "half_written_registry fails to load (ImportError: not finished)"}


def test_build_editor_names_the_missing_editor(registries, tiny_llama):
    assert build_editor("memit", *tiny_llama).name == "memit"
    with pytest.raises(EditorUnavailable, match="Editor 'medrek' is not available: no registry "
                                                r"provides it yet \(buildable: memit, pmet, recipe\)"):
        build_editor("medrek", *tiny_llama)
    with pytest.raises(EditorUnavailable, match="'pmet' cannot be built: RuntimeError"):
        build_editor("pmet", *tiny_llama)


def test_sequential_memit_script_fails_clearly_without_memit(monkeypatch, tiny_llama):
    monkeypatch.setattr(discovery, "REGISTRIES", {"no_such_registry_module": ("memit",)})
    monkeypatch.setattr(sequential_memit, "load", lambda name: tiny_llama)
    result = CliRunner().invoke(sequential_memit.main, [])
    assert result.exit_code == 2
    assert "Editor 'memit' is not available: no registry provides it yet" in result.output


def test_medcfpp_table_runs_the_unedited_baseline_and_lists_the_rest(monkeypatch, tiny_llama,
                                                                      tmp_cache):
    monkeypatch.setattr(discovery, "REGISTRIES", {"no_such_registry_module": ("memit",)})
    monkeypatch.setattr(medcfpp_table, "load", lambda name: tiny_llama)
    result = CliRunner().invoke(medcfpp_table.main, ["--edits", "3", "--quiet"],
                                terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "MedCF++ test, 3 edits in one batch" in result.output
    assert "unedited" in result.output and "100.0" in result.output  # locality of no edit
    assert "Not run (unavailable): memit (no registry provides it yet)." in result.output


def test_medcfpp_table_runs_a_chosen_subset_and_refuses_unknown_names(monkeypatch, registries,
                                                                       tiny_llama, tmp_cache):
    monkeypatch.setattr(medcfpp_table, "load", lambda name: tiny_llama)
    result = CliRunner().invoke(medcfpp_table.main, ["--edits", "2", "--quiet", "--editors", "ft_l"])
    assert result.exit_code == 0, result.output
    assert "unedited" in result.output and "memit" not in result.output
    assert "Not run (unavailable): ft_l (no registry provides it yet)." in result.output
    result = CliRunner().invoke(medcfpp_table.main, ["--edits", "2", "--editors", "rome"])
    assert result.exit_code == 2
    assert "Unknown editor rome in --editors" in result.output
