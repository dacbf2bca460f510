"""A covariance cache hit without loading the model: it finds exactly the files the full path
finds, never trusts a memo after the model folder changed, and falls back when unsure."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from cli import main
from covariance.cache_hit import LocalModel, cached_second_moments, memo_kind, remember_identity
from covariance.collect import CollectOptions
from covariance.corpus import Corpus
from covariance.identity import ModelFacts
from covariance.stats import second_moments
from lm.folder_memo import memo_path, recall
from lm.loading import load
from tiny_models import CORPUS_TEXT, tiny_model, tiny_tokenizer

REPO = Path(__file__).resolve().parent.parent
CORPUS = Corpus("tiny", CORPUS_TEXT)
OPTIONS = CollectOptions(token_budget=300, max_length=24, batch_size=3, bf16=False)
FP32 = torch.float32


def save_tiny_llama(folder: Path, seed: int) -> Path:
    tiny_model("llama", seed=seed).save_pretrained(folder)
    tiny_tokenizer().save_pretrained(folder)
    return folder


@pytest.fixture
def folder(tmp_path, tmp_cache) -> Path:
    return save_tiny_llama(tmp_path / "tiny-llama", seed=5)


def load_and_remember(folder: Path):
    local = LocalModel.find(str(folder))
    model, tok = load(str(folder), device="cpu")
    remember_identity(local, model, tok, FP32)
    return model, tok


def hit(folder: Path, layers=(0, 2), options=OPTIONS):
    return cached_second_moments(LocalModel.find(str(folder)), layers, CORPUS, options, FP32)


def test_cache_hit_returns_what_the_full_path_returns(folder):
    model, tok = load_and_remember(folder)
    assert hit(folder) is None  # remembered, but nothing is cached yet
    full = second_moments(model, tok, [2, 0, 2], CORPUS, OPTIONS)
    found = hit(folder, layers=(2, 0, 2))
    assert found is not None and list(found) == list(full) == [0, 2]
    for layer in full:
        assert found[layer].path == full[layer].path and found[layer].path.is_file()
        assert found[layer].tokens == full[layer].tokens == OPTIONS.token_budget
        assert torch.equal(found[layer].total, full[layer].total)
    # Other options name other files, which do not exist yet.
    assert hit(folder, options=CollectOptions(token_budget=200, max_length=24, batch_size=3, bf16=False)) is None
    assert hit(folder, options=CollectOptions(token_budget=300, max_length=24, batch_size=3, bf16=True)) is None
    assert hit(folder, layers=(0, 1)) is None  # layer 1 was never computed
    assert hit(folder, layers=(0, 3)) is None  # out of range: the full path says so


def test_memoised_identity_equals_the_measured_one(folder):
    model, tok = load_and_remember(folder)
    facts = recall(folder, memo_kind(FP32))
    assert ModelFacts.from_json(facts) == ModelFacts.of(model, tok)
    assert recall(folder, memo_kind(torch.bfloat16)) is None  # another load dtype, another identity


def test_rewritten_weights_void_the_memo_and_the_full_path_finds_new_files(folder):
    model, tok = load_and_remember(folder)
    old = second_moments(model, tok, [1], CORPUS, OPTIONS)
    assert hit(folder, layers=(1,)) is not None
    weights = folder / "model.safetensors"
    before = weights.stat()
    save_tiny_llama(folder, seed=6)  # same architecture: same size, new bytes, new mtime
    assert weights.stat().st_size == before.st_size and weights.stat().st_mtime_ns != before.st_mtime_ns
    assert recall(folder, memo_kind(FP32)) is None
    assert hit(folder, layers=(1,)) is None
    new_model, new_tok = load_and_remember(folder)
    new = second_moments(new_model, new_tok, [1], CORPUS, OPTIONS)
    assert new[1].path != old[1].path and not torch.equal(new[1].total, old[1].total)
    assert hit(folder, layers=(1,))[1].path == new[1].path


@pytest.mark.parametrize("change", ["mtime only", "size", "new file", "removed file"])
def test_any_change_to_the_folder_voids_the_memo(folder, change):
    load_and_remember(folder)
    assert recall(folder, memo_kind(FP32)) is not None
    weights = folder / "model.safetensors"
    if change == "mtime only":  # same bytes, but nothing proves it without reading them
        info = weights.stat()
        os.utime(weights, ns=(info.st_atime_ns, info.st_mtime_ns + 1_000_000_000))
    elif change == "size":
        with open(weights, "ab") as handle:
            handle.write(b"\0")
    elif change == "new file":
        (folder / "added_tokens.json").write_text("{}")
    else:
        (folder / "generation_config.json").unlink()
    assert recall(folder, memo_kind(FP32)) is None


def test_nothing_is_remembered_if_the_folder_changed_during_the_load(folder):
    local = LocalModel.find(str(folder))
    model, tok = load(str(folder), device="cpu")
    (folder / "config.json").write_text((folder / "config.json").read_text() + "\n")
    remember_identity(local, model, tok, FP32)
    assert not memo_path(folder, memo_kind(FP32)).exists()


def test_damaged_memo_or_unknown_names_take_the_full_path(folder, tmp_path):
    load_and_remember(folder)
    memo_path(folder, memo_kind(FP32)).write_text("{not json")
    assert recall(folder, memo_kind(FP32)) is None and hit(folder) is None
    assert LocalModel.find(str(tmp_path / "absent")) is None
    assert LocalModel.find("HuggingFaceTB/SmolLM2-135M") is None  # a hub id is never a local folder


def test_cli_cache_hit_prints_the_same_rows_without_importing_transformers(folder, tmp_path, tmp_cache):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(CORPUS_TEXT)
    args = ["covariance", "--model", str(folder), "--layers", "2,0", "--tokens", "300", "--max-length", "24",
            "--batch-size", "3", "--dtype", "fp32", "--corpus", str(corpus), "--json"]
    first = CliRunner().invoke(main, args)
    assert first.exit_code == 0, first.output
    assert memo_path(folder, memo_kind(FP32)).is_file()

    probe = ("import sys; from cli import main; main(sys.argv[1:], standalone_mode=False); "
             "print('transformers imported:', 'transformers' in sys.modules, file=sys.stderr)")
    env = {**os.environ, "EDITSCOPE_CACHE": str(tmp_cache), "OMP_NUM_THREADS": "1"}
    second = subprocess.run([sys.executable, "-c", probe, *args], cwd=REPO, env=env, capture_output=True,
                            text=True, timeout=300)
    assert second.returncode == 0, second.stderr
    assert "transformers imported: False" in second.stderr
    rows = json.loads(first.output)["layers"]
    assert [row["layer"] for row in rows] == [0, 2]
    assert json.loads(second.stdout)["layers"] == rows
