"""Shared fixtures (and one intra-op torch thread for the whole suite; see below).

- `default_model`: `(model, tokenizer)` of the embedded default model, loaded once per session
  from whatever `$EDITSCOPE_CACHE` the environment gives (the first load ever dequantises the
  GGUF, ~30 s; later loads read the cached folder). Shared: a test that changes its weights
  must restore them before returning (e.g. `try/finally` or an editor's `undo()`).
- `default_tokenizer`: the default model's tokenizer alone (cheap; no model weights).
- `tiny_tok`: the byte-level tokenizer of `tiny_models` (session-scoped; do not mutate).
- `tiny_llama`: a fresh seeded tiny llama `(model, tokenizer)` per test.
- `tmp_cache`: points `$EDITSCOPE_CACHE` at a temporary folder for one test, with its `models`
  folder linked to the real cache's, so `load("default")` still reuses the dequantised model
  while every other cached file (covariance, checkpoints) lands in the temporary folder.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))  # so test files can `import tiny_models`

import tiny_models  # noqa: E402

# One intra-op thread by default: on a small shared machine, OpenMP threads spinning against
# other processes made a tiny-model forward 100x slower (0.8 s instead of 5 ms) and a
# default-model forward 10x slower. Set EDITSCOPE_TEST_THREADS to use more.
torch.set_num_threads(int(os.environ.get("EDITSCOPE_TEST_THREADS", "1")))


@pytest.fixture(scope="session")
def default_model():
    from lm.loading import load

    return load("default", device="cpu")


@pytest.fixture(scope="session")
def default_tokenizer():
    from transformers import AutoTokenizer

    from lm.embedded import embedded_model_dir

    return AutoTokenizer.from_pretrained(embedded_model_dir())


@pytest.fixture(scope="session")
def tiny_tok():
    return tiny_models.tiny_tokenizer()


@pytest.fixture
def tiny_llama(tiny_tok):
    return tiny_models.tiny_model("llama", seed=0), tiny_tok


@pytest.fixture
def tmp_cache(tmp_path, monkeypatch) -> Path:
    from lm.files import cache_root

    real_models = cache_root() / "models"
    real_models.mkdir(parents=True, exist_ok=True)
    root = tmp_path / "editscope-cache"
    root.mkdir()
    (root / "models").symlink_to(real_models, target_is_directory=True)
    monkeypatch.setenv("EDITSCOPE_CACHE", str(root))
    return root
