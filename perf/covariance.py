"""Key statistics: our one truncated pass over all layers vs the reference-style procedure.

The reference collects one layer per pass over the corpus with a full fp32 forward pass each
time (all 30 layers and the lm head). Ours hooks every requested layer at once and stops after
the highest one, with the forward in bf16 where the CPU multiplies bf16 natively (the default,
`lm.precision.bf16_is_fast`; both precisions are timed). Both run on the same token sequences of
the same corpus here, in one process, and both sum k kᵀ in float64 the same way.

    python perf/covariance.py [--tokens 20000] [--layers 4-8]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from covariance.collect import CollectOptions, RunningSums, accumulate_batches, forward_copy, pad_batch  # noqa: E402
from covariance.corpus import length_sorted_batches, load_corpus, token_sequences  # noqa: E402
from editors.hparams import parse_layers  # noqa: E402
from lm.adapters import adapter_for  # noqa: E402
from lm.hooks import on_inputs  # noqa: E402
from lm.loading import load  # noqa: E402
from perf.memory import PeakMemory  # noqa: E402


def reference_style(model, adapter, batches, layers, pad_id, width) -> RunningSums:
    """One full forward pass over the corpus per layer, as the public MEMIT code does."""
    state = RunningSums.zeros(layers, width)
    for layer in layers:
        module = {str(layer): model.get_submodule(adapter.mlp_out_name(layer))}
        for batch in batches:
            input_ids, mask = pad_batch(batch, pad_id, "cpu")
            real = mask.reshape(-1).bool()

            def add(name, keys):
                flat = keys.reshape(-1, keys.shape[-1])[real].float()
                state.sums[int(name)] += (flat.T @ flat).double()

            with torch.no_grad(), on_inputs(module, add):
                model(input_ids=input_ids, attention_mask=mask, use_cache=False)
    state.tokens = sum(len(ids) for batch in batches for ids in batch)
    return state


def ours(model, adapter, batches, layers, pad_id, width, bf16: bool) -> RunningSums:
    runner = forward_copy(model, bf16)
    return accumulate_batches(runner, adapter, batches, RunningSums.zeros(layers, width), pad_id)


def timed(fn):
    with PeakMemory() as peak:
        started = time.perf_counter()
        result = fn()
        seconds = time.perf_counter() - started
    return result, seconds, peak.extra_bytes


@click.command()
@click.option("--tokens", type=int, default=20_000, show_default=True)
@click.option("--layers", default="4-8", show_default=True)
@click.option("--model", "model_name", default="default", show_default=True)
def main(tokens: int, layers: str, model_name: str) -> None:
    model, tok = load(model_name, device="cpu")
    adapter = adapter_for(model)
    layer_list = list(parse_layers(layers))
    _, width = adapter.widths(model)
    options = CollectOptions(token_budget=tokens)
    sequences = token_sequences(tok, load_corpus(), options.max_length, tokens)
    batches = length_sorted_batches(sequences, options.batch_size)
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id

    runs = {
        "reference-style (fp32, 1 full pass per layer)": lambda: reference_style(
            model, adapter, batches, layer_list, pad_id, width),
        "ours fp32 (1 truncated pass, all layers)": lambda: ours(
            model, adapter, batches, layer_list, pad_id, width, bf16=False),
        "ours bf16 (default with AMX/AVX512-BF16)": lambda: ours(
            model, adapter, batches, layer_list, pad_id, width, bf16=True),
    }
    results = {name: timed(fn) for name, fn in runs.items()}
    reference, ref_seconds, _ = results[next(iter(runs))]
    print(f"{tokens:,} tokens, layers {layer_list}, {torch.get_num_threads()} threads\n")
    print(f"{'procedure':50s} {'seconds':>8s} {'tok/s':>8s} {'peak MB':>8s} {'speed-up':>9s} {'rel. diff':>9s}")
    for name, (state, seconds, extra) in results.items():
        diff = max(
            float((state.sums[l] - reference.sums[l]).norm() / reference.sums[l].norm()) for l in layer_list
        )
        print(f"{name:50s} {seconds:8.1f} {tokens / seconds:8.0f} {extra / 2**20:8.0f} "
              f"{ref_seconds / seconds:8.1f}x {diff:9.1e}")
    print("\nrel. diff = largest relative Frobenius difference of Σkkᵀ from the reference over the layers.")


if __name__ == "__main__":
    main()
