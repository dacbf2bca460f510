"""How fast is our batched value optimisation, and how long does a batch-100 MEMIT edit take?

    python -m perf.editing [--requests 100] [--reference 10] [--threads N]

On one batch of CounterFact test edits with the default model, in one run:

1. The whole MEMIT edit (keys, batched value optimisation, spread, apply), once with the value
   optimisation in float32 and once in bfloat16: wall time of each part and the efficacy of the
   edit (teacher-forced target accuracy and P(new) > P(old)).
2. The reference-style value optimisation (one request at a time, a full forward pass per
   step, logits at every position) on the first `--reference` requests; its time per request is
   extrapolated to the whole batch (said so in the output), and the ratio against our float32
   optimisation of the whole batch is printed. Both value sets are then written with MEMIT's
   spread for those requests, and the two edits' efficacies are compared.

The covariance is read from the cache (computed first if absent, not timed); optimised values
are never reused from the value cache here, so every timing is of a real optimisation.
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from data.benchmarks import load_benchmark
from editors.applied import WeightEdit
from editors.covariances import fetch_moments
from editors.hparams import load_hparams
from editors.kv_editor import prepare_batch
from editors.memit import MemitEditor
from editors.solve import memit_delta
from editors.spread import spread_over_layers
from editors.values import ValueOptions, optimise_values
from lm.adapters import adapter_for
from lm.hooks import add_at_positions, capture
from lm.loading import load
from lm.scoring import LMScorer
from metrics.efficacy import efficacy_score, token_accuracy


def efficacy(model, tok, requests) -> tuple[float, float]:
    """(teacher-forced target accuracy, share with P(new) > P(old)) on the edit prompts."""
    scorer = LMScorer(model, tok)
    prompts = [r.prompt for r in requests]
    new = scorer.score(prompts, [r.target_new for r in requests])
    old = scorer.score(prompts, [r.target_true for r in requests])
    return token_accuracy(new), efficacy_score(new, old)


def reference_style_values(model, tok, batch, indices, options: ValueOptions, layer: int) -> tuple[torch.Tensor, float]:
    """MEMIT's z step as the reference runs it: per request, full forward, all-position logits."""
    adapter = adapter_for(model)
    block = model.get_submodule(adapter.block_name(layer))
    targets_z = []
    started = time.perf_counter()
    for r in indices:
        target = list(batch.targets[r])
        sequences = [list(site.ids) + target[:-1] for site in batch.sites[r]]
        positions = [site.position for site in batch.sites[r]]
        essence = batch.essence[r]
        if essence is not None:
            sequences.append(list(essence.ids))
            positions.append(essence.position)
        width = max(len(s) for s in sequences)
        input_ids = torch.zeros(len(sequences), width, dtype=torch.long)
        mask = torch.zeros_like(input_ids)
        for row, ids in enumerate(sequences):
            input_ids[row, : len(ids)] = torch.tensor(ids)
            mask[row, : len(ids)] = 1
        rows = torch.arange(len(sequences))
        cols = torch.tensor(positions)
        n_prompts = len(batch.sites[r])
        delta = torch.zeros(model.config.hidden_size, requires_grad=True)
        optimiser = torch.optim.Adam([delta], lr=options.lr)
        h0 = base = None
        for step in range(options.steps):
            with capture({"block": block}) as seen, add_at_positions(block, delta.expand(len(rows), -1), rows, cols):
                logits = model(input_ids=input_ids, attention_mask=mask).logits
            logprobs = logits.float().log_softmax(-1)  # every position, as the reference does
            if step == 0:
                h0 = seen["block"][0, positions[0]].float()
            nll = 0.0
            for row in range(n_prompts):
                first = len(batch.sites[r][row].ids) - 1
                picked = logprobs[row, first : first + len(target)].gather(1, torch.tensor(target)[:, None])
                nll = nll - picked.mean() / n_prompts
            kl = torch.zeros(())
            if essence is not None and options.kl_factor > 0:
                current = logprobs[n_prompts, positions[-1]]
                if step == 0:
                    base = current.detach()
                kl = (current.exp() * (current - base)).sum()
            loss = nll + options.kl_factor * kl + options.weight_decay * delta.norm() / h0.norm() ** 2
            if loss.item() < options.early_stop or step == options.steps - 1:
                break
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            with torch.no_grad():
                limit = options.clamp_factor * h0.norm()
                if delta.norm() > limit:
                    delta.mul_(limit / delta.norm())
        targets_z.append((h0 + delta).detach())
    return torch.stack(targets_z), time.perf_counter() - started


def memit_edit_from_values(model, tok, batch, indices, hparams, moments, targets: torch.Tensor) -> WeightEdit:
    adapter = adapter_for(model)
    spread = spread_over_layers(
        model,
        [batch.sites[i] for i in indices],
        [[i] for i in range(len(indices))],
        hparams.layers,
        adapter.block_name(hparams.last_layer),
        targets,
        solve=lambda layer, R, K: memit_delta(R, K, moments[layer].matrix(), hparams.mom2_update_weight),
    )
    return WeightEdit.apply(model, tok, spread.deltas)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--reference", type=int, default=10, help="requests run reference-style")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    model, tok = load("default")
    requests = load_benchmark("counterfact", "test")[: args.requests]
    print(f"{len(requests)} CounterFact test edits, default model, {torch.get_num_threads()} threads, "
          f"load average {os.getloadavg()[0]:.1f} at start (other processes slow every wall time here)")
    timings = {}
    for dtype in ("float32", "bfloat16"):
        hparams = load_hparams("memit", model.config.model_type, {"v_dtype": dtype})
        # Values optimised by an earlier run would be read from the cache, not timed.
        editor = MemitEditor(hparams, reuse_values=False)
        editor.moments(model, tok)  # compute or read the covariance outside the timed edit
        started, cpu_started = time.perf_counter(), time.process_time()
        applied = editor.apply(model, tok, requests)
        total, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        accuracy, score = efficacy(model, tok, requests)
        applied.undo()
        values = applied.info["seconds"]["values"]
        timings[dtype] = values
        print(
            f"MEMIT batch {len(requests)}, value optimisation in {dtype}: total edit {total:.0f} s "
            f"(values {values:.0f} s, rest {total - values:.0f} s; CPU time {cpu:.0f} s); "
            f"efficacy accuracy {accuracy:.3f}, "
            f"P(new)>P(old) {score:.3f}"
        )
    faster = min(timings, key=timings.get)
    print(f"faster value optimisation (forward+backward) on this CPU: {faster} "
          f"(float32 {timings['float32']:.0f} s, bfloat16 {timings['bfloat16']:.0f} s)")

    hparams = load_hparams("memit", model.config.model_type, {"v_dtype": "float32"})
    options = ValueOptions.from_hparams(hparams)
    batch = prepare_batch(model, tok, requests, hparams)
    adapter = adapter_for(model)
    subset = list(range(min(args.reference, len(requests))))
    reference_z, reference_seconds = reference_style_values(model, tok, batch, subset, options, hparams.last_layer)
    per_request = reference_seconds / len(subset)
    extrapolated = per_request * len(requests)
    note = "" if len(subset) == len(requests) else (
        f" (reference-style measured on {len(subset)} requests, {per_request:.1f} s each, "
        f"extrapolated to {len(requests)})"
    )
    ours_seconds = timings["float32"]
    print(f"value optimisation of {len(requests)} requests in float32: ours {ours_seconds:.0f} s, "
          f"reference-style {extrapolated:.0f} s{note}; ratio {extrapolated / ours_seconds:.1f}x")

    # Requests are optimised independently, so the subset's vectors equal those of the batch run.
    ours = optimise_values(
        model, hparams.last_layer, batch.sites, batch.essence, batch.targets,
        [[i] for i in subset], (adapter.block_name(hparams.last_layer),), options,
    )
    ours_z = ours.targets(adapter.block_name(hparams.last_layer))
    gap = ((ours_z - reference_z).norm(dim=1) / reference_z.norm(dim=1)).max().item()
    moments = fetch_moments(MemitEditor(hparams).covariance, model, tok, hparams.layers)
    subset_requests = [requests[i] for i in subset]
    results = {}
    for name, z in (("ours", ours_z), ("reference-style", reference_z)):
        applied = memit_edit_from_values(model, tok, batch, subset, hparams, moments, z)
        results[name] = efficacy(model, tok, subset_requests)
        applied.undo()
    print(f"largest relative difference of the {len(subset)} value vectors: {gap:.2e}")
    for name, (accuracy, score) in results.items():
        print(f"MEMIT edit of those {len(subset)} with {name} values: efficacy accuracy {accuracy:.3f}, "
              f"P(new)>P(old) {score:.3f}")


if __name__ == "__main__":
    main()
