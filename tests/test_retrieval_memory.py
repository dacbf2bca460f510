"""Edit memory: exact search, removal, stable ids, atomic save/load and refusal of foreign files."""

import os

import numpy as np
import pytest
import torch

import retrieval.memory as memory_module
from retrieval.memory import EditMemory, MemoryFormatError, ModelIdentity, NetworkIdentity

LLM = ModelIdentity("smollm2-135m@abc123", 576)
ENCODER = ModelIdentity("default", 1536)
NETWORK = NetworkIdentity("medrek", "c0ffee" * 10)
KEY_WIDTH = 32
VALUE_SHAPE = (3, 8)


def filled_memory(count=200, value_dtype=torch.float32, seed=0):
    generator = torch.Generator().manual_seed(seed)
    memory = EditMemory(KEY_WIDTH, VALUE_SHAPE, llm=LLM, encoder=ENCODER, network=NETWORK, value_dtype=value_dtype)
    memory.add(
        torch.randn(count, KEY_WIDTH, generator=generator),
        torch.randn(count, *VALUE_SHAPE, generator=generator),
        [{"prompt": f"prompt {i}", "target": f"target {i}", "tags": ("a", i)} for i in range(count)],
    )
    return memory


def load(path, **overrides):
    expectations = {"expect_llm": LLM, "expect_key_width": KEY_WIDTH, **overrides}
    return EditMemory.load(path, **expectations)


def test_search_returns_exact_inner_product_neighbours():
    rng = np.random.default_rng(1)
    keys = rng.standard_normal((500, KEY_WIDTH)).astype(np.float32)
    queries = rng.standard_normal((40, KEY_WIDTH)).astype(np.float32)
    memory = EditMemory(KEY_WIDTH, VALUE_SHAPE, llm=LLM)
    ids = memory.add(keys, np.zeros((500, *VALUE_SHAPE), np.float32), [None] * 500)

    scores, found = memory.search(torch.from_numpy(queries), k=5)

    brute = queries @ keys.T
    expected_rows = np.argsort(-brute, axis=1)[:, :5]
    assert found.tolist() == np.asarray(ids)[expected_rows].tolist()
    np.testing.assert_allclose(
        scores.numpy(), np.take_along_axis(brute, expected_rows, 1), rtol=1e-5, atol=1e-5
    )


def test_empty_memory_and_missing_slots_give_minus_one_and_minus_inf():
    memory = EditMemory(KEY_WIDTH, VALUE_SHAPE, llm=LLM)
    scores, ids = memory.search(torch.randn(2, KEY_WIDTH), k=3)
    assert ids.tolist() == [[-1] * 3] * 2
    assert torch.isneginf(scores).all()
    assert len(memory) == 0
    assert memory.values_for([]).shape == (0, *VALUE_SHAPE)

    memory.add(torch.randn(1, KEY_WIDTH), torch.randn(1, *VALUE_SHAPE), [{}])
    scores, ids = memory.search(torch.randn(1, KEY_WIDTH), k=3)
    assert ids[0].tolist() == [0, -1, -1]
    assert torch.isfinite(scores[0, 0]) and torch.isneginf(scores[0, 1:]).all()


def test_remove_removes_exactly_those_ids():
    memory = filled_memory(50)
    doomed = [0, 7, 13, 49]
    memory.remove(doomed)

    assert len(memory) == 46
    assert sorted(memory.ids) == [i for i in range(50) if i not in doomed]
    _, found = memory.search(torch.randn(30, KEY_WIDTH), k=46)
    assert not set(found.flatten().tolist()) & set(doomed)
    assert set(found.flatten().tolist()) == set(memory.ids)
    with pytest.raises(KeyError):
        memory.values_for([7])
    with pytest.raises(KeyError):
        memory.metadata_for([13])


def test_remove_with_an_unknown_id_removes_nothing():
    memory = filled_memory(10)
    memory.remove([3])
    before = memory.ids
    with pytest.raises(KeyError, match=r"\[3, 99\].*nothing was removed"):
        memory.remove([1, 3, 99])
    assert memory.ids == before


def test_ids_are_never_reused_even_across_save_and_load(tmp_path):
    memory = filled_memory(3)
    memory.remove([1, 2])
    assert memory.add(torch.randn(1, KEY_WIDTH), torch.randn(1, *VALUE_SHAPE), [{}]) == [3]
    memory.remove([3])
    memory.save(tmp_path / "memory.safetensors")
    reloaded = load(tmp_path / "memory.safetensors")
    assert reloaded.add(torch.randn(2, KEY_WIDTH), torch.randn(2, *VALUE_SHAPE), [{}, {}]) == [4, 5]


def test_a_bad_batch_adds_nothing():
    memory = filled_memory(5)
    with pytest.raises(ValueError, match="values have shape"):
        memory.add(torch.randn(2, KEY_WIDTH), torch.randn(2, 4, 8), [{}, {}])
    with pytest.raises(ValueError, match="JSON"):
        memory.add(torch.randn(1, KEY_WIDTH), torch.randn(1, *VALUE_SHAPE), [{"x": object()}])
    with pytest.raises(ValueError, match="NaN"):
        memory.add(torch.full((1, KEY_WIDTH), float("nan")), torch.randn(1, *VALUE_SHAPE), [{}])
    assert len(memory) == 5
    assert memory.add(torch.randn(1, KEY_WIDTH), torch.randn(1, *VALUE_SHAPE), [{}]) == [5]


@pytest.mark.parametrize("value_dtype", [torch.float32, torch.bfloat16])
def test_save_load_round_trip_is_identical(tmp_path, value_dtype):
    memory = filled_memory(120, value_dtype=value_dtype)
    memory.remove([5, 6, 60])
    path = tmp_path / "nested" / "memory.safetensors"
    memory.save(path)
    reloaded = load(path, expect_encoder=ENCODER, expect_network=NETWORK)

    assert reloaded.ids == memory.ids
    queries = torch.randn(25, KEY_WIDTH)
    for got, expected in zip(reloaded.search(queries, k=4), memory.search(queries, k=4)):
        assert torch.equal(got, expected)
    values = reloaded.values_for(memory.ids)
    assert values.dtype == value_dtype
    assert torch.equal(values, memory.values_for(memory.ids))
    assert reloaded.metadata_for(memory.ids) == memory.metadata_for(memory.ids)
    assert reloaded.metadata_for([0]) == [{"prompt": "prompt 0", "target": "target 0", "tags": ["a", 0]}]
    assert (reloaded.llm, reloaded.encoder, reloaded.network, reloaded.value_shape) == (LLM, ENCODER, NETWORK, VALUE_SHAPE)
    assert [name for name in os.listdir(path.parent)] == ["memory.safetensors"]  # no temp left


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"expect_llm": ModelIdentity("llama-3-8b@def456", 576)}, "built for LLM"),
        ({"expect_llm": ModelIdentity(LLM.fingerprint, 4096)}, r"not for .*width 4096"),
        ({"expect_key_width": 64}, "keys of width 32, but keys of width 64"),
        ({"expect_encoder": ModelIdentity("roberta-base", 3072)}, "not with encoder"),
        ({"expect_network": NetworkIdentity("recipe", NETWORK.checksum)}, "built by retrieval network 'medrek'"),
        ({"expect_network": NetworkIdentity("medrek", "0" * 64)}, r"not by 'medrek' \(checksum 0000"),
    ],
)
def test_load_refuses_a_memory_built_for_something_else(tmp_path, overrides, message):
    filled_memory(10).save(tmp_path / "memory.safetensors")
    with pytest.raises(MemoryFormatError, match=message):
        load(tmp_path / "memory.safetensors", **overrides)


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda data: data[: len(data) // 2], "truncated or corrupt"),
        (lambda data: data[:-1], "truncated or corrupt"),
        (lambda data: b"", "truncated or corrupt"),
        (lambda data: b"this is not a safetensors file at all" * 5, "truncated or corrupt"),
        (lambda data: data[:-9] + bytes([data[-9] ^ 0x10]) + data[-8:], "checksum does not match"),
    ],
    ids=["half", "last-byte", "empty", "garbage", "bit-flip"],
)
def test_damaged_files_are_refused(tmp_path, damage, message):
    path = tmp_path / "memory.safetensors"
    filled_memory(10).save(path)
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(MemoryFormatError, match=message):
        load(path)


def test_a_safetensors_file_that_is_not_a_memory_is_refused(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "weights.safetensors"
    save_file({"weight": torch.zeros(2, 2)}, path)
    with pytest.raises(MemoryFormatError, match="not an editscope edit memory"):
        load(path)


def test_an_interrupted_save_leaves_the_previous_file_intact(tmp_path, monkeypatch):
    path = tmp_path / "memory.safetensors"
    filled_memory(10).save(path)
    before = path.read_bytes()

    def crash_midway(tensors, filename, metadata):
        with open(filename, "wb") as stream:
            stream.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(memory_module, "save_file", crash_midway)
    with pytest.raises(KeyboardInterrupt):
        filled_memory(20, seed=1).save(path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["memory.safetensors"]
    assert len(load(path)) == 10
