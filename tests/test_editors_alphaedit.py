"""AlphaEdit's null space on a tiny llama: the update moves the preserved keys' outputs by no
more than the energy share the projector was chosen for, and the run's info says what was kept.

The preserved keys are real: every MLP key the model produces on a stretch of the shipped
corpus, and the covariance handed to the editor is exactly their second moment, so the bound
trace(P C) / trace(C) <= share holds for those keys themselves.
"""

from __future__ import annotations

import pytest
import torch

from covariance.stats import SecondMoment
from data.corpus import corpus_text
from data.requests import EditRequest
from editors.covariances import GivenCovariance
from editors.registry import make_editor
from lm.adapters import adapter_for
from lm.hooks import on_inputs

LAYERS = (1, 2)
FAST = {"layers": "1-2", "v_num_grad_steps": 4, "n_templates": 2, "template_len": 4, "v_dtype": "float32"}
REQUESTS = (
    EditRequest(prompt="The capital of France is", subject="France", target_new="Rome", target_true="Paris"),
    EditRequest(prompt="Water boils at a temperature of", subject="Water", target_new="fifty degrees"),
)


def corpus_keys(model, tok, tokens: int = 400) -> dict[int, torch.Tensor]:
    """[n, d_ff] MLP keys (inputs of the output projection) at every position of corpus text."""
    adapter = adapter_for(model)
    modules = {str(layer): model.get_submodule(adapter.mlp_out_name(layer)) for layer in LAYERS}
    seen: dict[int, torch.Tensor] = {}
    ids = tok(corpus_text()[:4000])["input_ids"][:tokens]
    with torch.no_grad(), on_inputs(modules, lambda name, x: seen.__setitem__(int(name), x.reshape(-1, x.shape[-1]))):
        model(torch.tensor([ids]))
    return {layer: keys.double() for layer, keys in seen.items()}


@pytest.mark.parametrize("share", [0.02, 0.2])
def test_update_moves_the_preserved_keys_by_at_most_the_energy_share(tiny_llama, tmp_path, share):
    model, tok = tiny_llama
    keys = corpus_keys(model, tok)
    moments = GivenCovariance({layer: SecondMoment(layer, K.T @ K, len(K)) for layer, K in keys.items()})
    editor = make_editor("alphaedit", model, {**FAST, "nullspace_energy": share}, covariance=moments,
                         cache_root=tmp_path)
    adapter = adapter_for(model)
    before = {layer: adapter.mlp_out_weight(model, layer).detach().double().clone() for layer in LAYERS}

    applied = editor.apply(model, tok, REQUESTS)
    try:
        for layer, K in keys.items():
            delta = adapter.mlp_out_weight(model, layer).detach().double() - before[layer]  # [d, d_ff]
            assert delta.abs().max() > 1e-6  # the edit did change the layer
            moved = (K @ delta.T).pow(2).sum()  # Σ_k ‖ΔW k‖² over the preserved keys
            # ‖ΔW k‖² = ‖ΔW P k‖² ≤ ‖ΔW‖₂² ‖P k‖², and Σ‖P k‖² = n trace(P C) ≤ share · Σ‖k‖².
            bound = share * torch.linalg.matrix_norm(delta, 2) ** 2 * K.pow(2).sum()
            assert moved <= bound * 1.001 + 1e-12
            kept = applied.info["null_space"][layer]
            assert 0 < kept["dims"] < kept["of"] == K.shape[1]
            assert kept["energy_share"] <= share + 1e-9
    finally:
        applied.undo()


def test_threshold_rule_stays_available_and_reports_its_share(tiny_llama, tmp_path):
    model, tok = tiny_llama
    keys = corpus_keys(model, tok)
    moments = GivenCovariance({layer: SecondMoment(layer, K.T @ K, len(K)) for layer, K in keys.items()})
    spectrum = torch.linalg.eigvalsh(moments.given[2].matrix())
    half = len(spectrum) // 2
    # Midway (geometrically) between two eigenvalues, so the editor's own eigendecomposition, which
    # may round differently on another CPU, cannot land on the other side: keeps the lower half.
    threshold = float((spectrum[half - 1] * spectrum[half]).sqrt())
    editor = make_editor("alphaedit", model, {**FAST, "nullspace_rule": "threshold", "nullspace_threshold": threshold},
                         covariance=moments, cache_root=tmp_path)
    applied = editor.apply(model, tok, REQUESTS)
    applied.undo()
    kept = applied.info["null_space"][2]
    assert kept["dims"] == half == int((spectrum < threshold).sum())
    expected = spectrum[spectrum < threshold].clamp_min(0).sum() / spectrum.sum()
    assert kept["energy_share"] == pytest.approx(float(expected), abs=1e-9)
