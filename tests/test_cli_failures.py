"""How a command ends when it does not succeed: the user's mistake exits 2 with one sentence
before any costly step, a bug exits 1 with its traceback, Ctrl-C exits 130; none of them
leaves a report folder behind. A tiny model stands in for the default one."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner
from tiny_models import tiny_model

from cli import main
from experiments import harness
from experiments.commands import compare

COMPARE = ["compare", "--editors", "unedited", "--batch", "2", "--benchmark", "counterfact",
           "--fluency-prompts", "0", "--perplexity-tokens", "0", "--workers", "1"]


@pytest.fixture
def loads(monkeypatch, tiny_tok, tmp_cache):
    """Replace compare's model load by a tiny llama; count the loads."""
    calls = []

    def load(name):
        calls.append(name)
        return tiny_model("llama", seed=2, layers=9), tiny_tok

    monkeypatch.setattr(compare, "load", load)
    return calls


def compare_run(reports: Path):
    return CliRunner().invoke(main, [*COMPARE, "--reports-dir", str(reports)])


def test_a_bug_in_the_scorer_exits_1_with_its_traceback(loads, monkeypatch, tmp_path):
    def broken(*args, **kwargs):
        raise KeyError("deliberately broken scorer")

    monkeypatch.setattr(harness, "score_requests", broken)
    result = compare_run(tmp_path / "reports")
    assert result.exit_code == 1
    # The exception escapes the command (Python prints its traceback); it is not a usage error.
    assert isinstance(result.exception, KeyError)
    assert "Error:" not in result.output
    assert not (tmp_path / "reports").exists()


def test_ctrl_c_exits_130_and_leaves_no_report(loads, monkeypatch, tmp_path):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(harness, "score_requests", interrupted)
    result = compare_run(tmp_path / "reports")
    assert result.exit_code == 130
    assert not (tmp_path / "reports").exists()


def unwritable_folder(tmp_path: Path) -> Path:
    """A folder no file can be created in, also for root (who ignores permission bits): sysfs
    refuses new entries to everyone."""
    if os.geteuid() == 0:
        return Path("/sys/editscope-reports")
    folder = tmp_path / "read-only"
    folder.mkdir(mode=0o555)
    return folder / "reports"


def test_an_unwritable_reports_dir_exits_2_before_the_model_loads(loads, tmp_path):
    reports = unwritable_folder(tmp_path)
    result = compare_run(reports)
    assert result.exit_code == 2, result.output
    (line,) = result.output.strip().splitlines()
    assert line.startswith(f"Error: --reports-dir {reports}: ") and "not writable" in line
    assert loads == []  # refused while parsing: no model loaded, no editor run


def test_an_unwritable_cache_exits_2_before_the_model_loads(loads, monkeypatch, tmp_path):
    cache = unwritable_folder(tmp_path)
    monkeypatch.setenv("EDITSCOPE_CACHE", str(cache))
    result = compare_run(tmp_path / "reports")
    assert result.exit_code == 2, result.output
    (line,) = result.output.strip().splitlines()
    assert line.startswith(f"Error: The cache folder {cache} cannot be written (") and "$EDITSCOPE_CACHE" in line
    assert loads == [] and not (tmp_path / "reports").exists()


def test_a_half_truncated_covariance_file_is_recomputed_by_the_next_run(tmp_path, tiny_tok, tmp_cache, caplog):
    folder = tmp_path / "model"
    tiny_model("llama", seed=0).save_pretrained(folder)
    tiny_tok.save_pretrained(folder)
    command = ["covariance", "--model", str(folder), "--layers", "1", "--tokens", "60", "--max-length", "16",
               "--dtype", "fp32", "--json"]
    first = CliRunner().invoke(main, command)
    assert first.exit_code == 0, first.output
    (path,) = (tmp_cache / "covariance").rglob("*.safetensors")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    again = CliRunner().invoke(main, command)
    assert again.exit_code == 0, again.output
    (warning,) = [r.getMessage() for r in caplog.records if r.name == "editscope.cache"]
    assert str(path) in warning and "recomputing" in warning
    assert json.loads(again.output)["layers"][0]["trace"] == pytest.approx(json.loads(first.output)["layers"][0]["trace"])
