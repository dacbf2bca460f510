"""`editscope plan`: the estimated peak memory of a key–value edit, and the chunk it would use,
from a model's config alone (no weights are read or downloaded)."""

from __future__ import annotations

import json
from pathlib import Path

import click
import torch

from experiments.console import console
from lm.errors import UsageError
from lm.loading import LOAD_DTYPES, load_dtype_name


def read_config(model: str):
    """The config of 'default' (the embedded model), a config.json file, a model folder, or a
    hub id (only its config.json is fetched)."""
    from transformers import AutoConfig

    from lm.loading import quiet_transformers, resolve_model_source

    path = Path(model)
    with quiet_transformers():
        if path.is_file():
            described = json.loads(path.read_text())
            if "model_type" not in described:
                raise UsageError(f"{path} has no model_type; it is not a transformers config.json.")
            return AutoConfig.for_model(**described)
        try:
            return AutoConfig.from_pretrained(resolve_model_source(model))
        except (OSError, ValueError) as error:
            raise UsageError(f"Cannot read a model config from {model!r}: {str(error).splitlines()[0]}") from None


@click.command("plan")
@click.option("--model", "model_name", default="default", show_default=True,
              help="'default', a config.json file, a model folder, or an HF model id (only its config is read).")
@click.option("--editor", "editor_name", default="memit", show_default=True,
              help="A key–value editor: memit, pmet, memit_merge, alphaedit.")
@click.option("--batch", type=click.IntRange(min=1), default=100, show_default=True, help="Requests edited at once.")
@click.option("--max-memory", default=None,
              help="Memory of the device (e.g. 24GB, 80GiB); default: what this machine has free now.")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default=None,
              help="Where the model would run (default: cuda when available). On a GPU the covariance "
                   "statistics stay in host memory.")
@click.option("--dtype", "dtype_name", type=click.Choice(sorted(LOAD_DTYPES)), default=None,
              help="Precision the weights are loaded in (default: what --load-dtype gives the other commands, "
                   "float32 unless set).")
@click.option("--prompt-tokens", type=click.FloatRange(min=1), default=None,
              help="Tokens of a typical prompt (default: the CounterFact mean, 8.8).")
@click.option("--target-tokens", type=click.FloatRange(min=1), default=None,
              help="Tokens of a typical target (default: the CounterFact mean, 1.24).")
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
def plan_command(model_name, editor_name, batch, max_memory, device, dtype_name, prompt_tokens, target_tokens,
                 as_json):
    """Estimate the peak memory of a key-value edit and the chunk of requests it would use."""
    from editors.hparams import ValueOptimisationHparams, load_hparams
    from editors.memory_plan import plan_values, typical_lengths
    from editors.values import DTYPES as COMPUTE_DTYPES
    from lm.adapters import UnsupportedArchitecture
    from lm.memory import MemoryBudget, ModelShape, dtype_bytes, format_size, parse_size

    # Only parsed: a plan allocates nothing, so no budget of this process is set up.
    budget_bytes = None if max_memory is None else parse_size(max_memory)
    dtype_name = dtype_name or load_dtype_name()
    config = read_config(model_name)
    try:
        shape = ModelShape.from_config(config, LOAD_DTYPES[dtype_name])
    except (UnsupportedArchitecture, KeyError) as error:
        raise UsageError(f"Cannot plan for model type {config.model_type!r}: {error}") from None
    hparams = load_hparams(editor_name.strip().lower().replace("-", "_"), config.model_type)
    if not isinstance(hparams, ValueOptimisationHparams):
        raise UsageError(f"plan covers the key–value editors (memit, pmet, memit_merge, alphaedit), not {editor_name}.")
    hparams.check_fits(shape.layers)
    device_type = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if budget_bytes is None:
        budget_bytes = MemoryBudget.resolve(torch.device(device_type)).total
        budget_source = "free on this machine now"
    else:
        budget_source = "--max-memory"
    compute = dtype_bytes(COMPUTE_DTYPES[hparams.v_dtype])
    lengths = typical_lengths(hparams, prompt_tokens, target_tokens)
    plan = plan_values(shape, hparams, batch, compute, budget_bytes, lengths, on_cpu=device_type == "cpu")
    described = {
        "model_type": config.model_type,
        "parameters": shape.parameter_bytes // shape.dtype_bytes,
        "layers": shape.layers,
        "edit_layer": hparams.last_layer,
        "value_dtype": hparams.v_dtype,
        "value_dtype_auto": _chose_automatically(hparams),
        "weights_bytes": plan.weights_bytes,
        "copy_bytes": plan.copy_bytes,
        "statistics_bytes": plan.statistics_bytes,
        "statistics_on_device": plan.on_cpu,
        "runtime_bytes": plan.runtime_bytes,
        "request_bytes": plan.request_bytes,
        "budget_bytes": budget_bytes,
        "fits": plan.fits,
        "chunk": plan.chunk if plan.fits else None,
        "chunks": -(-batch // plan.chunk) if plan.fits else None,
        "peak_bytes": plan.peak_bytes() if plan.fits else plan.peak_bytes(1),
        "whole_batch_peak_bytes": plan.peak_bytes(batch),
    }
    if as_json:
        click.echo(json.dumps(described, indent=1))
        return
    out = console(False)
    out.print(f"{config.model_type}: {shape.layers} layers, width {shape.width}, MLP {shape.ffn_width}, "
              f"{shape.heads} heads ({shape.kv_heads} key/value), vocabulary {shape.vocab}; "
              f"{described['parameters'] / 1e9:.2f} B parameters")
    out.print(f"{editor_name} on {batch} requests: δ at layer {hparams.last_layer}, "
              f"{shape.layers - hparams.last_layer} blocks recomputed per step, value optimisation in {hparams.v_dtype}"
              + (" (the table's 'auto', resolved by this machine's CPU)" if described["value_dtype_auto"] else ""))
    out.print(f"typical request: prompt {lengths.prompt:g} tokens, target {lengths.target:g}, "
              f"{lengths.context_prefixes} context prefixes of {lengths.prefix_tokens:g} tokens")
    rows = [
        (f"weights ({dtype_name})", plan.weights_bytes, ""),
        (f"{hparams.v_dtype} copy for the optimisation", plan.copy_bytes, ""),
        (f"covariance statistics ({len(hparams.layers)} layers)", plan.statistics_bytes,
         "" if plan.on_cpu else "  (host memory, not on the GPU)"),
        ("runtime (interpreter, libraries, CUDA context)", plan.runtime_bytes, ""),
        ("per request", plan.request_bytes, ""),
    ]
    for name, size, note in rows:
        out.print(f"  {name:<48}{format_size(size):>10}{note}")
    out.print(f"  {'whole batch at once':<48}{format_size(plan.peak_bytes(batch)):>10}")
    if not plan.fits:
        out.print(f"budget {format_size(budget_bytes)} ({budget_source}): even one request needs "
                     f"{format_size(plan.peak_bytes(1))}; load the weights in bfloat16 (plan --dtype bfloat16, and "
                  "editscope --load-dtype bfloat16 for the edit) or use a larger device.")
        return
    out.print(f"budget {format_size(budget_bytes)} ({budget_source}): chunks of {plan.chunk} request(s) "
              f"({described['chunks']} chunk(s)); estimated peak {format_size(plan.peak_bytes())}")


def _chose_automatically(hparams) -> bool:
    """Whether the table left the value optimisation's dtype to `auto`, which resolves by the CPU
    the command runs on: a plan made elsewhere than the edit can differ from it there."""
    return hparams.file_values()["v_dtype"] == "auto"
