"""PMET's early stop (xpq-tech/PMET compute_zs): a request's value optimisation ends once its
target is the argmax at every target token and its KL term is at most 0.01, even while its loss
is far above the loss-based stop; other requests of the batch go on."""

from __future__ import annotations

import torch

from data.requests import EditRequest
from editors.keys import essence_sites, request_sites
from editors.values import ValueOptions, ValueProblem, optimise_values
from lm.adapters import adapter_for

REQUESTS = (
    EditRequest(prompt="The capital of France is", subject="France", target_new="x"),
    EditRequest(prompt="Water boils at a temperature of", subject="Water", target_new="x"),
)


def test_a_request_already_predicted_stops_at_once_and_the_others_continue(tiny_llama):
    model, tok = tiny_llama
    sites = request_sites(tok, REQUESTS, "subject_last", ())  # bare prompts only
    essence = essence_sites(tok, REQUESTS, "subject_last")
    with torch.no_grad():
        predicted = [int(model(torch.tensor([s[0].ids])).logits[0, -1].argmax()) for s in sites]
    # Request 0 asks for what the model already predicts; request 1 for something else.
    targets = [(predicted[0],), ((predicted[1] + 1) % len(tok),)]
    block = (adapter_for(model).block_name(2),)
    options = dict(steps=5, lr=0.1, weight_decay=0.5, clamp_factor=0.75, kl_factor=1.0, early_stop=0.05,
                   argmax_nll_weight=0.1, dtype="float32")

    problem = ValueProblem(2, sites, essence, targets, [[0], [1]], block)
    with_stop = optimise_values(model, problem, ValueOptions(**options, argmax_stop_kl=0.01))
    without = optimise_values(model, problem, ValueOptions(**options))

    assert with_stop.loss[0] > options["early_stop"]  # the loss alone would not have stopped it
    assert with_stop.updates.tolist()[0] == 0 and without.updates.tolist()[0] > 0
    assert with_stop.updates[1] == without.updates[1] > 0
    torch.testing.assert_close(with_stop.deltas[block[0]][0], torch.zeros_like(with_stop.deltas[block[0]][0]))
