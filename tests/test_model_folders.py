"""Model folders that exist but cannot be used are refused with one sentence (exit 2), each
for what it is: not a model folder, damaged weights, a refused pickle, non-finite outputs."""

from __future__ import annotations

import os
import pickle

import pytest
import torch
from click.testing import CliRunner
from tiny_models import tiny_model

from cli import main
from lm.embedded import ModelNotAvailable
from lm.loading import load


@pytest.fixture
def folder(tmp_path, tiny_tok):
    path = tmp_path / "model"
    tiny_model("llama", seed=0).save_pretrained(path)
    tiny_tok.save_pretrained(path)
    return path


def test_a_truncated_safetensors_folder_exits_2_with_one_sentence(folder, tmp_cache):
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    result = CliRunner().invoke(main, ["covariance", "--model", str(folder), "--layers", "0", "--tokens", "50"])
    assert result.exit_code == 2, result.output
    (line,) = result.output.strip().splitlines()
    assert line.startswith(f"Error: Model folder '{folder}' exists but cannot be loaded: a safetensors file "
                           "is damaged or truncated") and line.endswith(".")


def test_a_pickled_weights_file_is_refused_and_never_run(folder, tmp_path):
    marker = tmp_path / "pickle-ran"

    class RunsCode:
        def __reduce__(self):
            return (os.mkdir, (str(marker),))

    (folder / "model.safetensors").unlink()
    (folder / "pytorch_model.bin").write_bytes(pickle.dumps(RunsCode()))
    with pytest.raises(ModelNotAvailable, match="its pickled weights file was refused"):
        load(str(folder))
    assert not marker.exists()


def test_a_folder_without_config_is_not_a_model_folder(tmp_path):
    (tmp_path / "notes.txt").write_text("not a model")
    with pytest.raises(ModelNotAvailable, match="is not a model folder: it holds no config.json"):
        load(str(tmp_path))


def test_a_model_with_non_finite_outputs_is_refused_at_load(tmp_path, tiny_tok):
    model = tiny_model("llama", seed=0)
    with torch.no_grad():
        model.model.layers[0].mlp.down_proj.weight[0, 0] = float("nan")
    model.save_pretrained(tmp_path)
    tiny_tok.save_pretrained(tmp_path)
    with pytest.raises(ModelNotAvailable, match="produces non-finite outputs"):
        load(str(tmp_path))
