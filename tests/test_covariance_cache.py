"""The covariance cache: resumption after an interruption, and repair of files that are
damaged or belong to another statistic (moved aside with one warning, then recomputed)."""

from __future__ import annotations

import logging
import shutil

import pytest
import torch
from safetensors.torch import save_file

from covariance.cache import load_partial, statistic_path
from covariance.collect import CollectOptions
from covariance.corpus import Corpus, length_sorted_batches, token_sequences
from covariance.stats import second_moments, statistic_keys
from lm.cache_entries import DAMAGED_SUFFIX, seal_path, sealed_file, verified
from tiny_models import CORPUS_TEXT, tiny_model

CORPUS = Corpus("tiny", CORPUS_TEXT)
OPTIONS = CollectOptions(token_budget=300, max_length=24, batch_size=3, bf16=False, checkpoint_every=1)
LAYERS = [0, 2]


class Interrupted(Exception):
    pass


def interrupt_after(batches: int):
    """A progress callback that raises once `batches` batches are done (it is called once
    before the first batch and once after each)."""
    calls = []

    def progress(done: int, todo: int) -> None:
        calls.append(done)
        if len(calls) > batches:
            raise Interrupted

    return progress, calls


@pytest.fixture(scope="module")
def model():
    return tiny_model("llama", seed=3)


@pytest.fixture(scope="module")
def uninterrupted(model, tiny_tok, tmp_path_factory):
    root = tmp_path_factory.mktemp("uninterrupted")
    return second_moments(model, tiny_tok, LAYERS, CORPUS, OPTIONS, cache_root=root)


def partial_files(root):
    return sorted(root.rglob("partial.*"))


def test_interrupted_then_resumed_run_equals_uninterrupted(model, tiny_tok, tmp_path, uninterrupted):
    batches = length_sorted_batches(
        token_sequences(tiny_tok, CORPUS, OPTIONS.max_length, OPTIONS.token_budget), OPTIONS.batch_size
    )
    assert len(batches) >= 4
    k = 2
    progress, _ = interrupt_after(k)
    with pytest.raises(Interrupted):
        second_moments(model, tiny_tok, LAYERS, CORPUS, OPTIONS, progress=progress, cache_root=tmp_path)
    [checkpoint] = partial_files(tmp_path)
    sums, tokens, batches_done = load_partial(checkpoint, LAYERS)
    assert batches_done == k
    assert tokens == sum(len(ids) for batch in batches[:k] for ids in batch)
    assert not [p for p in tmp_path.rglob("*.safetensors") if not p.name.startswith("partial.")]

    resumed_progress, seen = interrupt_after(10**6)
    resumed = second_moments(model, tiny_tok, LAYERS, CORPUS, OPTIONS, progress=resumed_progress, cache_root=tmp_path)
    assert seen[0] == tokens  # it started from the checkpoint, not from zero
    assert len(seen) == 1 + len(batches) - k  # only the remaining batches were run
    for layer in LAYERS:
        assert resumed[layer].tokens == uninterrupted[layer].tokens == OPTIONS.token_budget
        assert torch.equal(resumed[layer].total, uninterrupted[layer].total)
    assert partial_files(tmp_path) == []  # removed after completion
    assert all(resumed[layer].path.is_file() for layer in LAYERS)


def test_damaged_checkpoint_is_ignored(model, tiny_tok, tmp_path, uninterrupted):
    progress, _ = interrupt_after(1)
    with pytest.raises(Interrupted):
        second_moments(model, tiny_tok, LAYERS, CORPUS, OPTIONS, progress=progress, cache_root=tmp_path)
    [checkpoint] = partial_files(tmp_path)
    checkpoint.write_bytes(b"\x00garbage" * 10)
    result = second_moments(model, tiny_tok, LAYERS, CORPUS, OPTIONS, cache_root=tmp_path)
    for layer in LAYERS:
        assert torch.equal(result[layer].total, uninterrupted[layer].total)
    assert partial_files(tmp_path) == []


@pytest.fixture
def cached(model, tiny_tok, tmp_path, uninterrupted):
    """A cache root holding both layers' files and their seals (copied from the uninterrupted run)."""
    paths = {}
    for layer in LAYERS:
        source = uninterrupted[layer].path
        paths[layer] = tmp_path / source.relative_to(source.parents[1])
        paths[layer].parent.mkdir(parents=True, exist_ok=True)
        for entry, copy in ((source, paths[layer]), (seal_path(source), seal_path(paths[layer]))):
            shutil.copy(entry, copy)
    second_moments(model, tiny_tok, LAYERS, CORPUS, OPTIONS, cache_root=tmp_path)  # sanity: accepted
    return tmp_path, paths


def repaired(model, tok, root, path, uninterrupted, caplog) -> str:
    """The next run moves the damaged `path` aside with one warning naming it, recomputes it
    identically and caches it again; returns the warning."""
    with caplog.at_level(logging.WARNING, logger="editscope.cache"):
        result = second_moments(model, tok, LAYERS, CORPUS, OPTIONS, cache_root=root)
    for layer in LAYERS:
        assert torch.equal(result[layer].total, uninterrupted[layer].total)
    (warning,) = [record.getMessage() for record in caplog.records if record.name == "editscope.cache"]
    assert str(path) in warning and "\n" not in warning
    assert path.with_name(path.name + DAMAGED_SUFFIX).is_file()
    assert verified(path)  # cached again, sealed
    return warning


def sealed_write(path, tensors, metadata):
    """A file that matches its seal yet holds the wrong statistic (a seal proves integrity,
    not meaning, so the content is still checked)."""
    with sealed_file(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)


@pytest.mark.parametrize("garbage", [b"", b"garbage" * 50, b"\x10\x00\x00\x00\x00\x00\x00\x00{}"])
def test_garbage_file_is_recomputed_naming_the_path(model, tiny_tok, cached, garbage, uninterrupted, caplog):
    root, paths = cached
    paths[0].write_bytes(garbage)
    assert "bytes instead of" in repaired(model, tiny_tok, root, paths[0], uninterrupted, caplog)


def test_half_truncated_file_is_recomputed(model, tiny_tok, cached, uninterrupted, caplog):
    root, paths = cached
    data = paths[2].read_bytes()
    paths[2].write_bytes(data[: len(data) // 2])
    assert "bytes instead of" in repaired(model, tiny_tok, root, paths[2], uninterrupted, caplog)


def test_same_size_corruption_is_caught_by_the_checksum(model, tiny_tok, cached, uninterrupted, caplog):
    root, paths = cached
    data = bytearray(paths[0].read_bytes())
    data[-1] ^= 0xFF
    paths[0].write_bytes(bytes(data))
    assert "checksum" in repaired(model, tiny_tok, root, paths[0], uninterrupted, caplog)


def test_unsealed_file_is_recomputed(model, tiny_tok, cached, uninterrupted, caplog):
    root, paths = cached
    seal_path(paths[0]).unlink()
    assert "no valid seal" in repaired(model, tiny_tok, root, paths[0], uninterrupted, caplog)


def test_file_of_another_layer_is_recomputed(model, tiny_tok, cached, uninterrupted, caplog):
    root, paths = cached
    with sealed_file(paths[0]) as tmp:
        shutil.copy(paths[2], tmp)
    warning = repaired(model, tiny_tok, root, paths[0], uninterrupted, caplog)
    assert "layer='2'" in warning and "expected '0'" in warning


def test_file_of_another_model_is_recomputed(model, tiny_tok, cached, tmp_path_factory, uninterrupted, caplog):
    root, paths = cached
    other = tiny_model("llama", seed=99)
    foreign = second_moments(other, tiny_tok, [0], CORPUS, OPTIONS, cache_root=tmp_path_factory.mktemp("other"))[0]
    with sealed_file(paths[0]) as tmp:
        shutil.copy(foreign.path, tmp)
    assert "model=" in repaired(model, tiny_tok, root, paths[0], uninterrupted, caplog)


def key_for(model, tok, layer):
    return statistic_keys(model, tok, [layer], CORPUS, OPTIONS)[layer]


@pytest.mark.parametrize(
    "total",
    [torch.zeros(65, 65, dtype=torch.float64), torch.zeros(64, 64, dtype=torch.float32),
     torch.zeros(64, dtype=torch.float64)],
    ids=["wrong-width", "wrong-dtype", "wrong-rank"],
)
def test_wrong_shape_or_dtype_is_recomputed(model, tiny_tok, cached, total, uninterrupted, caplog):
    root, paths = cached
    key = key_for(model, tiny_tok, 0)
    assert statistic_path(key, root) == paths[0]
    sealed_write(paths[0], {"sum": total}, {**key.as_metadata(), "tokens": "300"})
    assert "(64, 64) float64" in repaired(model, tiny_tok, root, paths[0], uninterrupted, caplog)


@pytest.mark.parametrize("tokens", ["0", "-5", "many"])
def test_bad_token_count_is_recomputed(model, tiny_tok, cached, tokens, uninterrupted, caplog):
    root, paths = cached
    key = key_for(model, tiny_tok, 0)
    sealed_write(paths[0], {"sum": torch.eye(64, dtype=torch.float64)}, {**key.as_metadata(), "tokens": tokens})
    assert "no tokens" in repaired(model, tiny_tok, root, paths[0], uninterrupted, caplog)


def test_non_finite_sum_is_recomputed(model, tiny_tok, cached, uninterrupted, caplog):
    root, paths = cached
    key = key_for(model, tiny_tok, 0)
    total = torch.eye(64, dtype=torch.float64)
    total[3, 3] = float("nan")
    sealed_write(paths[0], {"sum": total}, {**key.as_metadata(), "tokens": "300"})
    assert "non-finite" in repaired(model, tiny_tok, root, paths[0], uninterrupted, caplog)
