"""Architecture adapters on tiny random models of every supported family."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from transformers.pytorch_utils import Conv1D

from lm.adapters import ADAPTERS, UnsupportedArchitecture, adapter_for
from lm.hooks import capture
from tiny_models import FAMILIES, LAYERS, tiny_config, tiny_model

EXPECTED_KINDS = {  # adapter field -> what the module at that path must be
    "blocks": lambda m: type(m).__name__.endswith(("DecoderLayer", "Block")),
    "attention": lambda m: "Attention" in type(m).__name__,
    "mlp": lambda m: "MLP" in type(m).__name__,
    "final_norm": lambda m: "Norm" in type(m).__name__,
    "lm_head": lambda m: isinstance(m, nn.Linear),
    "embeddings": lambda m: isinstance(m, nn.Embedding),
}


def test_every_listed_family_has_a_tiny_model():
    assert set(FAMILIES) == set(ADAPTERS)


@pytest.fixture(scope="module", params=FAMILIES)
def family_model(request):
    return request.param, tiny_model(request.param)


def test_adapter_chosen_by_model_type(family_model):
    model_type, model = family_model
    assert model.config.model_type == model_type
    assert adapter_for(model) is ADAPTERS[model_type]


def test_every_path_resolves_to_a_module_of_the_right_kind(family_model):
    model_type, model = family_model
    adapter = adapter_for(model)
    assert adapter.num_layers(model) == LAYERS
    for layer in range(LAYERS):
        paths = {
            "blocks": adapter.block_name(layer),
            "attention": adapter.attention_name(layer),
            "mlp": adapter.mlp_name(layer),
        }
        for field, path in paths.items():
            module = model.get_submodule(path)
            assert EXPECTED_KINDS[field](module), f"{model_type}: {path} is a {type(module).__name__}"
        out = model.get_submodule(adapter.mlp_out_name(layer))
        assert isinstance(out, Conv1D if model_type == "gpt2" else nn.Linear)
        assert adapter.mlp_out_name(layer).startswith(adapter.mlp_name(layer) + ".")
        assert adapter.mlp_out_weight(model, layer) is out.weight
    for field in ("final_norm", "lm_head", "embeddings"):
        module = model.get_submodule(getattr(adapter, field))
        assert EXPECTED_KINDS[field](module), f"{model_type}: {field} is a {type(module).__name__}"
    # the layer list the blocks come from is the one the model runs, in order
    blocks = [model.get_submodule(adapter.block_name(layer)) for layer in range(LAYERS)]
    assert len({id(block) for block in blocks}) == LAYERS


def test_widths_match_config_and_orientation(family_model):
    model_type, model = family_model
    config = model.config
    d = config.hidden_size if hasattr(config, "hidden_size") else config.n_embd
    d_ff = getattr(config, "intermediate_size", None) or config.n_inner
    assert d != d_ff  # otherwise an orientation mistake would go unnoticed
    adapter = adapter_for(model)
    assert adapter.widths(model) == (d, d_ff)
    weight = adapter.mlp_out_weight(model, 0)
    if model_type == "gpt2":
        assert adapter.mlp_out_transposed
        assert tuple(weight.shape) == (d_ff, d)
    else:
        assert not adapter.mlp_out_transposed
        assert tuple(weight.shape) == (d, d_ff)


def test_mlp_out_maps_key_width_to_residual_width(family_model):
    """The output projection consumes d_ff-wide keys and produces d-wide values."""
    _, model = family_model
    adapter = adapter_for(model)
    d, d_ff = adapter.widths(model)
    out = model.get_submodule(adapter.mlp_out_name(1))
    ids = torch.tensor([[0, 5, 9, 77, 120]])
    with torch.no_grad(), capture({"in": out}, what="input") as ins, capture({"out": out}) as outs:
        model(input_ids=ids)
    assert ins["in"].shape == (1, 5, d_ff)
    assert outs["out"].shape == (1, 5, d)


def test_unsupported_model_type_is_refused():
    model = tiny_model("llama")
    model.config.model_type = "bert"
    with pytest.raises(UnsupportedArchitecture, match="No architecture adapter for model_type 'bert'"):
        adapter_for(model)


def test_tiny_config_rejects_unknown_family():
    with pytest.raises(ValueError):
        tiny_config("opt")
