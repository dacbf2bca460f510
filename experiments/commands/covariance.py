"""`editscope covariance`: precompute (or find in the cache) MLP key second moments."""

from __future__ import annotations

import json
import time

import click
import torch
from rich.table import Table

from covariance.cache_hit import LocalModel, cached_second_moments, remember_identity
from covariance.collect import CollectOptions
from covariance.corpus import DEFAULT_CORPUS, load_corpus
from covariance.distributed import current_rank
from covariance.stats import check_layers, second_moments
from experiments.commands.common import model_option, parse_layer_option
from experiments.console import console, fail, progress_bar
from lm.loading import load

LOAD_DTYPE = torch.float32  # the statistics' model; the memoised identity is per load dtype


@click.command("covariance")
@model_option
@click.option("--layers", default="4-8", show_default=True, help="Layers, e.g. 4-8 or 2,4,6.")
@click.option("--tokens", type=int, default=100_000, show_default=True, help="Token budget.")
@click.option("--corpus", default=DEFAULT_CORPUS, show_default=True,
              help="Shipped corpus name, a text file, or hf:NAME[:CONFIG[:SPLIT]].")
@click.option("--max-length", type=int, default=256, show_default=True, help="Tokens per sequence.")
@click.option("--batch-size", type=int, default=16, show_default=True, help="Sequences per forward.")
@click.option("--dtype", type=click.Choice(["bf16", "fp32"]), default="bf16", show_default=True,
              help="Forward precision (sums are always float64).")
@click.option("--quiet", is_flag=True, help="No progress bar or table.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
def covariance_command(model_name, layers, tokens, corpus, max_length, batch_size, dtype, quiet, as_json):
    """Compute uncentred key second moments E[k kᵀ] for several layers in one pass, cached.

    Runs under `torchrun --nproc_per_node N cli.py covariance ...` too: each rank sums a shard.
    """
    layer_list = parse_layer_option(layers)
    if tokens <= 0:
        fail(f"--tokens must be positive, not {tokens}.")
    if max_length < 2 or batch_size < 1:
        fail("--max-length must be at least 2 and --batch-size at least 1.")
    rank = current_rank()
    out = console(quiet or as_json or not rank.is_main)
    options = CollectOptions(token_budget=tokens, max_length=max_length,
                             batch_size=batch_size, bf16=dtype == "bf16")
    text = load_corpus(corpus)
    local = LocalModel.find(model_name)  # its files' snapshot must precede the load
    started = time.perf_counter()
    # A cache hit needs the cache keys, not the model. Under torchrun every rank takes the
    # full path, so no rank can skip a collective that another rank enters.
    stats = None
    if local is not None and rank.world == 1:
        stats = cached_second_moments(local, layer_list, text, options, LOAD_DTYPE)
    if stats is None:
        model, tok = load(model_name, dtype=LOAD_DTYPE)
        check_layers(model, layer_list)
        if local is not None and rank.is_main:
            remember_identity(local, model, tok, LOAD_DTYPE)
        started = time.perf_counter()
        with progress_bar(out, "key statistics", "tok") as update:
            stats = second_moments(model, tok, layer_list, text, options, progress=update, rank=rank)
    seconds = time.perf_counter() - started
    if not rank.is_main:
        return
    rows = [
        {"layer": s.layer, "tokens": s.tokens, "trace": float(s.matrix().trace()), "path": str(s.path)}
        for s in stats.values()
    ]
    if as_json:
        click.echo(json.dumps({"model": model_name, "seconds": round(seconds, 3), "layers": rows}, indent=2))
        return
    table = Table(title=f"Key second moments ({model_name}, {corpus})")
    for column in ("layer", "tokens", "trace E[kkᵀ]"):
        table.add_column(column, no_wrap=True)
    table.add_column("cache file", overflow="fold")
    for row in rows:
        table.add_row(str(row["layer"]), f"{row['tokens']:,}", f"{row['trace']:.2f}", row["path"])
    out.print(table)
    out.print(f"Done in {seconds:.1f} s.")
