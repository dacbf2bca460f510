"""`editscope covariance`: precompute (or find in the cache) MLP key second moments.

With `--null-space-shares` it also prints, per layer, how many dimensions AlphaEdit's energy
rule keeps at each share of trace(C) and what the reference's absolute threshold keeps
(the AlphaEdit reference code counts eigenvalues below τ = 2e-2 as null space)."""

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
from covariance.stats import SecondMoment, check_layers, second_moments
from experiments.commands.common import model_option, parse_layer_option
from experiments.console import console, fail, progress_bar
from lm.loading import LOAD_DTYPES, load, load_dtype_name
from lm.precision import PRECISION_CHOICES, wants_bf16
REFERENCE_THRESHOLD = 2e-2  # the AlphaEdit reference's absolute eigenvalue threshold


@click.command("covariance")
@model_option
@click.option("--layers", default="4-8", show_default=True, help="Layers, e.g. 4-8 or 2,4,6.")
@click.option("--tokens", type=int, default=100_000, show_default=True, help="Token budget.")
@click.option("--corpus", default=DEFAULT_CORPUS, show_default=True,
              help="Shipped corpus name, a text file, or hf:NAME[:CONFIG[:SPLIT]].")
@click.option("--max-length", type=int, default=256, show_default=True, help="Tokens per sequence.")
@click.option("--batch-size", type=int, default=16, show_default=True, help="Sequences per forward.")
@click.option("--dtype", type=click.Choice(PRECISION_CHOICES), default="auto", show_default=True,
              help="Forward precision (sums are always float64); auto: bf16 where the CPU multiplies it "
                   "natively (AMX, AVX512-BF16), else fp32.")
@click.option("--null-space-shares", default=None, metavar="S1,S2,...",
              help="Also show AlphaEdit's null-space dimension per layer at these shares of trace(C), "
                   "e.g. 0.001,0.01,0.1, and what the reference's threshold τ = 2e-2 keeps.")
@click.option("--quiet", is_flag=True, help="No progress bar or table.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
def covariance_command(model_name, layers, tokens, corpus, max_length, batch_size, dtype, null_space_shares,
                       quiet, as_json):
    """Compute uncentred key second moments E[k kᵀ] for several layers in one pass, cached.

    Runs under `torchrun --nproc_per_node N cli.py covariance ...` too: each rank sums a shard.
    """
    layer_list = parse_layer_option(layers)
    if tokens <= 0:
        fail(f"--tokens must be positive, not {tokens}.")
    if max_length < 2 or batch_size < 1:
        fail("--max-length must be at least 2 and --batch-size at least 1.")
    shares = parse_shares(null_space_shares) if null_space_shares is not None else ()
    rank = current_rank()
    out = console(quiet or as_json or not rank.is_main)
    options = CollectOptions(token_budget=tokens, max_length=max_length,
                             batch_size=batch_size, bf16=wants_bf16(dtype))
    text = load_corpus(corpus)
    local = LocalModel.find(model_name)  # its files' snapshot must precede the load
    started = time.perf_counter()
    # A cache hit needs the cache keys, not the model. Under torchrun every rank takes the
    # full path, so no rank can skip a collective that another rank enters.
    stats = None
    # The statistics of the model as the edits will load it (--load-dtype); the memoised
    # identity is per load dtype.
    load_dtype = LOAD_DTYPES[load_dtype_name()]
    if local is not None and rank.world == 1:
        stats = cached_second_moments(local, layer_list, text, options, load_dtype)
    if stats is None:
        model, tok = load(model_name, dtype=load_dtype)
        check_layers(model, layer_list)
        if local is not None and rank.is_main:
            remember_identity(local, model, tok, load_dtype)
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
    if shares:
        for row, moment in zip(rows, stats.values()):
            row["null_space"] = null_space_dimensions(moment, shares)
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
    if shares:
        out.print(null_space_table(rows, shares, f"{model_name}, {tokens} tokens"))
    out.print(f"Done in {seconds:.1f} s.")


def parse_shares(text: str) -> tuple[float, ...]:
    try:
        shares = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        fail(f"--null-space-shares must be comma-separated numbers, not {text!r}.")
    if not shares or not all(0 < share <= 1 for share in shares):
        fail(f"--null-space-shares needs shares in (0, 1], not {text!r}.")
    return shares


def null_space_dimensions(moment: SecondMoment, shares: tuple[float, ...]) -> dict:
    """What each null-space rule keeps of this layer's C (the rules of editors/solve.py)."""
    C = moment.matrix().double()
    eigenvalues = torch.linalg.eigvalsh((C + C.T) / 2).clamp_min(0)
    total = eigenvalues.sum()
    cumulative = eigenvalues.cumsum(0)  # ascending eigenvalues: the energy rule keeps a prefix
    below = eigenvalues < REFERENCE_THRESHOLD
    return {
        "width": len(eigenvalues),
        "kept_at_share": {repr(share): int((cumulative <= share * total).sum()) for share in shares},
        "threshold_kept": int(below.sum()),
        "threshold_energy_share": float(eigenvalues[below].sum() / total),
    }


def null_space_table(rows: list[dict], shares: tuple[float, ...], about: str) -> Table:
    table = Table(title=f"Null-space dimension kept (of d_ff) per layer, {about}")
    for column in ("Layer", "trace(C)", *(f"≤{100 * share:g}%" for share in shares),
                   "τ = 2e-2: dims", "τ = 2e-2: energy"):
        table.add_column(column, justify="right")
    for row in rows:
        kept = row["null_space"]
        table.add_row(str(row["layer"]), f"{row['trace']:.1f}",
                      *(str(kept["kept_at_share"][repr(share)]) for share in shares),
                      f"{kept['threshold_kept']} / {kept['width']}",
                      f"{100 * kept['threshold_energy_share']:.1f}%")
    return table
