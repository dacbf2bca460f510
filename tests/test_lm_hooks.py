"""Named hooks (capture, add_at_positions, stop_after) on tiny models of every family, and on
toy layers returning each of the two conventions (tuple or bare tensor)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lm.adapters import adapter_for
from lm.hooks import add_at_positions, capture, on_inputs, on_outputs, stop_after
from tiny_models import FAMILIES, LAYERS, mlp_input_hook, reference_keys, tiny_model

IDS = torch.tensor([[0, 40, 41, 42, 43, 44, 45, 46], [0, 50, 60, 70, 80, 90, 100, 110]])


class Boom(RuntimeError):
    pass


def all_hooks(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


@pytest.fixture(scope="module", params=FAMILIES)
def family_model(request):
    model = tiny_model(request.param, seed=1)
    assert all_hooks(model) == 0
    return request.param, model


def test_capture_of_mlp_out_input_equals_independent_key(family_model):
    model_type, model = family_model
    adapter = adapter_for(model)
    d, d_ff = adapter.widths(model)
    mlp_inputs: dict = {}
    handles = [
        model.get_submodule(adapter.mlp_name(layer)).register_forward_pre_hook(
            mlp_input_hook(mlp_inputs, str(layer)), with_kwargs=True
        )
        for layer in range(LAYERS)
    ]
    outs = {str(layer): model.get_submodule(adapter.mlp_out_name(layer)) for layer in range(LAYERS)}
    try:
        with torch.no_grad(), capture(outs, what="input") as keys:
            model(input_ids=IDS)
    finally:
        for handle in handles:
            handle.remove()
    assert sorted(keys) == sorted(outs)
    for layer in range(LAYERS):
        name = str(layer)
        mlp = model.get_submodule(adapter.mlp_name(layer))
        expected = reference_keys(model_type, mlp, mlp_inputs[name])
        assert keys[name].shape == (2, IDS.shape[1], d_ff)
        assert expected.abs().max() > 1e-4  # a non-trivial key, not all zeros
        torch.testing.assert_close(keys[name], expected, rtol=1e-5, atol=1e-7)
    assert all_hooks(model) == 0


def test_capture_output_of_block_is_the_residual_tensor(family_model):
    # own model: transformers 5 installs permanent capturing hooks on output_hidden_states
    model_type, _ = family_model
    model = tiny_model(model_type, seed=1)
    adapter = adapter_for(model)
    d, _ = adapter.widths(model)
    blocks = {str(layer): model.get_submodule(adapter.block_name(layer)) for layer in range(LAYERS)}
    with torch.no_grad(), capture(blocks) as hidden:
        out = model(input_ids=IDS, output_hidden_states=True)
    for layer in range(LAYERS - 1):  # the last hidden state has the final norm applied
        assert isinstance(hidden[str(layer)], torch.Tensor)
        torch.testing.assert_close(hidden[str(layer)], out.hidden_states[layer + 1])
    assert hidden[str(LAYERS - 1)].shape == (2, IDS.shape[1], d)


def test_add_at_positions_changes_only_that_row_and_position(family_model):
    _, model = family_model
    adapter = adapter_for(model)
    d, _ = adapter.widths(model)
    layer = 1
    block = model.get_submodule(adapter.block_name(layer))
    with torch.no_grad(), capture({"h": block}) as before:
        base_logits = model(input_ids=IDS).logits
    vectors = torch.randn(2, d, generator=torch.Generator().manual_seed(3)).requires_grad_(True)
    rows, positions = [1, 0], [3, 5]
    with add_at_positions(block, vectors, rows, positions), capture({"h": block}) as after:
        logits = model(input_ids=IDS).logits
    delta = after["h"] - before["h"]
    changed = delta.abs().amax(dim=-1) > 0
    expected_changed = torch.zeros_like(changed)
    expected_changed[1, 3] = expected_changed[0, 5] = True
    assert torch.equal(changed, expected_changed)
    torch.testing.assert_close(delta[1, 3], vectors[0].detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(delta[0, 5], vectors[1].detach(), rtol=1e-5, atol=1e-6)
    # causal model: logits move at and after the edited positions only, in the edited rows
    moved = (logits.detach() - base_logits).abs().amax(dim=-1) > 1e-6
    assert not moved[1, :3].any() and moved[1, 3:].all()
    assert not moved[0, :5].any() and moved[0, 5:].all()
    # gradients reach the free vectors (how value optimisation trains them)
    logits[1, -1].logsumexp(-1).backward()
    assert vectors.grad is not None and vectors.grad[0].abs().sum() > 0
    assert vectors.grad[1].abs().sum() == 0  # row 0's edit cannot influence row 1
    assert all_hooks(model) == 0
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=IDS).logits, base_logits, rtol=0, atol=0)


def test_add_at_positions_needs_matching_lengths(family_model):
    _, model = family_model
    block = model.get_submodule(adapter_for(model).block_name(0))
    with pytest.raises(ValueError, match="one row and one position per vector"):
        with add_at_positions(block, torch.zeros(2, 4), [0], [1, 2]):
            pass
    assert all_hooks(model) == 0


def test_stop_after_skips_later_layers_and_the_head(family_model):
    _, model = family_model
    adapter = adapter_for(model)
    blocks = [model.get_submodule(adapter.block_name(layer)) for layer in range(LAYERS)]
    watched = {f"block{i}": b for i, b in enumerate(blocks)}
    watched["final_norm"] = model.get_submodule(adapter.final_norm)
    watched["lm_head"] = model.get_submodule(adapter.lm_head)
    with torch.no_grad():
        reference = model(input_ids=IDS).logits
    calls = {name: 0 for name in watched}

    def count(name, _tensor):
        calls[name] += 1

    with torch.no_grad(), on_inputs(watched, count):
        with stop_after(blocks[0]):
            model(input_ids=IDS)
            pytest.fail("the forward pass should have been stopped")  # pragma: no cover
        assert calls == {"block0": 1, "block1": 0, "block2": 0, "final_norm": 0, "lm_head": 0}
        calls.update({name: 0 for name in calls})
        with capture({"h": blocks[1]}) as seen, stop_after(blocks[1]):
            model(input_ids=IDS)
        assert calls == {"block0": 1, "block1": 1, "block2": 0, "final_norm": 0, "lm_head": 0}
        assert "h" in seen  # a hook entered before stop_after still sees the stopping layer
        calls.update({name: 0 for name in calls})
        after = model(input_ids=IDS).logits  # the normal forward works afterwards
    assert calls == {name: 1 for name in calls}
    torch.testing.assert_close(after, reference, rtol=0, atol=0)
    assert all_hooks(model) == 0


def test_stop_after_does_not_swallow_other_errors(family_model):
    _, model = family_model
    adapter = adapter_for(model)
    block = model.get_submodule(adapter.block_name(0))
    with pytest.raises(KeyError):
        with stop_after(block):
            raise KeyError("unrelated")
    assert all_hooks(model) == 0

    def fail(_name, _tensor):
        raise Boom("below the stopping layer")

    with pytest.raises(Boom):
        with stop_after(model.get_submodule(adapter.block_name(2))), on_inputs({"b1": model.get_submodule(adapter.block_name(1))}, fail):
            with torch.no_grad():
                model(input_ids=IDS)
    assert all_hooks(model) == 0


@pytest.mark.parametrize("where", ["in_block", "in_hook_callback"])
def test_hooks_removed_after_an_exception(family_model, where):
    _, model = family_model
    adapter = adapter_for(model)
    block = model.get_submodule(adapter.block_name(1))
    out = model.get_submodule(adapter.mlp_out_name(1))
    d, _ = adapter.widths(model)

    def callback(_name, _tensor):
        if where == "in_hook_callback":
            raise Boom("from a hook")

    with pytest.raises(Boom):
        with (
            capture({"k": out}, what="input"),
            capture({"h": block}),
            on_inputs({"b": block}, callback),
            on_outputs({"o": out}, callback),
            add_at_positions(block, torch.ones(1, d), [0], [2]),
        ):
            assert all_hooks(model) == 5
            with torch.no_grad():
                model(input_ids=IDS)
            raise Boom("from the with block")
    assert all_hooks(model) == 0
    for module in model.modules():
        assert not module._forward_hooks and not module._forward_pre_hooks


def test_capture_rejects_unknown_what(family_model):
    _, model = family_model
    with pytest.raises(ValueError, match="must be 'input' or 'output'"):
        with capture({"x": model}, what="weights"):
            pass


# --- toy layers: both conventions, independent of the installed transformers version ---


class ToyBlock(nn.Module):
    def __init__(self, width: int, as_tuple: bool):
        super().__init__()
        self.linear = nn.Linear(width, width)
        self.as_tuple = as_tuple

    def forward(self, hidden):
        hidden = hidden + torch.tanh(self.linear(hidden))
        return (hidden, "extra") if self.as_tuple else hidden


class ToyModel(nn.Module):
    def __init__(self, as_tuple: bool, width: int = 6, depth: int = 3):
        super().__init__()
        torch.manual_seed(0)
        self.blocks = nn.ModuleList(ToyBlock(width, as_tuple) for _ in range(depth))
        self.head = nn.Linear(width, 2)

    def forward(self, hidden):
        for block in self.blocks:
            out = block(hidden)
            hidden = out[0] if isinstance(out, tuple) else out
        return self.head(hidden)


@pytest.mark.parametrize("as_tuple", [True, False], ids=["tuple", "tensor"])
def test_both_return_conventions(as_tuple):
    model = ToyModel(as_tuple)
    x = torch.randn(2, 4, 6, generator=torch.Generator().manual_seed(0))
    with torch.no_grad(), capture({"b0": model.blocks[0]}) as seen:
        base = model(x)
    assert isinstance(seen["b0"], torch.Tensor) and seen["b0"].shape == (2, 4, 6)
    vector = torch.full((1, 6), 0.5)
    with torch.no_grad(), add_at_positions(model.blocks[0], vector, [1], [2]), capture(
        {"b0": model.blocks[0]}
    ) as edited:
        moved = model(x)
    delta = edited["b0"] - seen["b0"]
    assert torch.allclose(delta[1, 2], vector[0]) and delta.abs().sum() == delta[1, 2].abs().sum()
    assert torch.equal(moved[0], base[0]) and not torch.equal(moved[1, 2], base[1, 2])
    calls = []
    with on_inputs({"b2": model.blocks[2], "head": model.head}, lambda n, _t: calls.append(n)):
        with stop_after(model.blocks[1]):
            model(x)
    assert calls == []
    assert all_hooks(model) == 0
