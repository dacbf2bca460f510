"""`torchrun --nproc_per_node 2` (gloo) on `stress` and `bench`, end to end: rank 0's report
equals a single process's report, timings aside.

The model is a tiny llama saved to a folder (`--model FOLDER`: a subprocess cannot be
monkeypatched), deep enough for the llama defaults; the single-process run is the same
command in the test process. MEMIT runs from an empty cache, so its covariance statistics are
collected over both ranks (sharded, all-reduced) before the ranks split the jobs; each run has
its own cache, so nothing computed by one is read by the other. (Before the sweep prepared
the editors on every rank, this run hung: the rank running MEMIT waited in the covariance
all-reduce for a rank that had gone on to the gather; the timeout turns a hang into a failure.)
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from tiny_models import tiny_model, tiny_tokenizer

from cli import main

REPO = Path(__file__).resolve().parents[1]
CHEAP = ["--fluency-prompts", "0", "--perplexity-tokens", "0", "--workers", "1", "--quiet"]
TIMING_KEYS = {"created", "timings"}  # wall-clock facts: differ between any two runs


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("tiny-llama")
    tiny_model("llama", seed=2, layers=9).save_pretrained(folder)
    tiny_tokenizer().save_pretrained(folder)
    return folder


def arguments(command: list[str], model_folder: Path, run_dir: Path) -> list[str]:
    return [*command, "--model", str(model_folder), *CHEAP, "--reports-dir", str(run_dir / "reports")]


def written_report(run_dir: Path) -> dict:
    (written,) = (run_dir / "reports").iterdir()  # one report folder (under torchrun: rank 0's)
    return json.loads((written / "report.json").read_text())


def torchrun_report(command: list[str], model_folder: Path, run_dir: Path) -> dict:
    env = {**os.environ, "EDITSCOPE_CACHE": str(run_dir / "cache"), "OMP_NUM_THREADS": "1"}
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    result = subprocess.run([*launcher, "cli.py", *arguments(command, model_folder, run_dir)],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return written_report(run_dir)


def single_process_report(command: list[str], model_folder: Path, run_dir: Path, monkeypatch) -> dict:
    """The same command in this process (no WORLD_SIZE: one process, every job here)."""
    monkeypatch.setenv("EDITSCOPE_CACHE", str(run_dir / "cache"))
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    result = CliRunner().invoke(main, arguments(command, model_folder, run_dir))
    assert result.exit_code == 0, result.output
    return written_report(run_dir)


def without_timings(value):
    if isinstance(value, dict):
        return {key: without_timings(item) for key, item in value.items()
                if key not in TIMING_KEYS and not key.endswith("seconds")}
    if isinstance(value, list):
        return [without_timings(item) for item in value]
    return value


def assert_same(single, ranked, where="report"):
    """Equal structure and strings; floats equal to 1e-9 relative (a statistic summed as two
    shards differs from one sum in the last bits)."""
    if isinstance(single, dict):
        assert isinstance(ranked, dict) and single.keys() == ranked.keys(), where
        for key in single:
            assert_same(single[key], ranked[key], f"{where}.{key}")
    elif isinstance(single, list):
        assert isinstance(ranked, list) and len(single) == len(ranked), where
        for index, (a, b) in enumerate(zip(single, ranked)):
            assert_same(a, b, f"{where}[{index}]")
    elif isinstance(single, float) and not isinstance(ranked, bool):
        assert isinstance(ranked, (int, float)), where
        assert math.isclose(single, ranked, rel_tol=1e-9, abs_tol=1e-12) or (math.isnan(single) and math.isnan(ranked)), \
            f"{where}: {single} vs {ranked}"
    else:
        assert single == ranked, f"{where}: {single!r} vs {ranked!r}"


@pytest.mark.parametrize("command, editors", [
    (["stress", "batch-sweep", "--benchmark", "counterfact", "--batch-sizes", "2"], "memit"),
    (["bench", "medical", "--benchmark", "medcf", "--batch", "2"], "ft_l"),
], ids=["stress", "bench"])
def test_rank_zero_reports_what_one_process_reports(command, editors, model_folder, tmp_path, monkeypatch):
    command = [*command, "--editors", editors]
    ranked = torchrun_report(command, model_folder, tmp_path / "torchrun")
    single = single_process_report(command, model_folder, tmp_path / "single", monkeypatch)
    # Real edits ran (the unedited reference is always first), in the same job order.
    assert list(dict.fromkeys(run["editor"] for run in single["runs"])) == ["unedited", *editors.split(",")]
    assert_same(without_timings(single), without_timings(ranked))
