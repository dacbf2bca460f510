"""Sealed cache entries: a damaged one is moved aside with one warning naming it, recomputed,
and cached again, for files and folders alike (the dequantised default model, baselines)."""

from __future__ import annotations


import pytest
from tiny_models import tiny_model

from data.benchmarks import load_benchmark
from experiments.baseline import BaselineCache
from lm import embedded
from lm.cache_entries import DAMAGED_SUFFIX, read_sealed_json, seal_path, sealed_directory, verified, write_sealed_json


def cache_warnings(caplog) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.name == "editscope.cache"]


def half_truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_a_sealed_json_entry_reads_back_until_it_is_damaged(tmp_path, caplog):
    entry = tmp_path / "entry.json"
    write_sealed_json(entry, {"value": [1, 2, 3]})
    assert read_sealed_json(entry) == {"value": [1, 2, 3]} and not cache_warnings(caplog)
    half_truncate(entry)
    assert read_sealed_json(entry) is None
    (warning,) = cache_warnings(caplog)
    assert warning.startswith(f"Warning: cache entry {entry} cannot be trusted (") and "bytes instead of" in warning
    assert not entry.exists() and not seal_path(entry).exists()
    assert (tmp_path / ("entry.json" + DAMAGED_SUFFIX)).is_file()
    assert read_sealed_json(entry) is None and len(cache_warnings(caplog)) == 1  # absent: no new warning


def test_a_folder_entry_notices_a_missing_or_added_file(tmp_path, caplog):
    entry = tmp_path / "folder"
    for change, phrase in ((lambda: (entry / "b.bin").unlink(), "b.bin is missing"),
                           (lambda: (entry / "extra").write_text("x"), "extra was not part of it")):
        with sealed_directory(entry) as folder:
            (folder / "a.txt").write_text("a")
            (folder / "b.bin").write_bytes(b"\0" * 100)
        assert verified(entry)
        change()
        assert not verified(entry) and phrase in cache_warnings(caplog)[-1]


@pytest.fixture
def own_cache(tmp_path, monkeypatch):
    """A cache root of this test alone (no link to the shared models folder)."""
    monkeypatch.setenv("EDITSCOPE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_a_half_truncated_default_model_is_rebuilt(own_cache, monkeypatch, tiny_tok, caplog):
    builds = []

    def dequantise(source, target):  # a tiny model in place of the 30 s GGUF dequantisation
        builds.append(target)
        with sealed_directory(target) as folder:
            tiny_model("llama", seed=0).save_pretrained(folder, safe_serialization=True)
            tiny_tok.save_pretrained(folder)

    monkeypatch.setattr(embedded, "_dequantise_into", dequantise)
    folder = embedded.embedded_model_dir()
    assert embedded.embedded_model_dir() == folder and len(builds) == 1  # verified, reused
    half_truncate(folder / "model.safetensors")
    assert embedded.embedded_model_dir() == folder and len(builds) == 2
    (warning,) = cache_warnings(caplog)
    assert str(folder) in warning and "model.safetensors has" in warning
    assert verified(folder)


def test_a_half_truncated_baseline_is_recomputed(own_cache, tiny_tok, caplog):
    model = tiny_model("llama", seed=1)
    requests = load_benchmark("counterfact", "test")[:2]
    cache = BaselineCache(model, tiny_tok, "tiny-fingerprint")
    first = cache.locality(requests, {"records": [0, 1]})
    (path,) = cache.directory.glob("locality-*.json")
    half_truncate(path)
    assert BaselineCache(model, tiny_tok, "tiny-fingerprint").locality(requests, {"records": [0, 1]}) == first
    (warning,) = cache_warnings(caplog)
    assert str(path) in warning
    assert verified(path)
