"""How much of the preserved keys' energy AlphaEdit's null space holds, per layer and rule.

    python -m experiments.scripts.null_space_table [--model default] [--layers 3-7] [--tokens 100000]

For each layer's key second moment C (the cached corpus statistics editors use): the dimension
the energy rule keeps at several shares of trace(C), and what the reference's absolute
threshold (eigenvalue < 2e-2) keeps and the share of trace(C) that subspace holds.
"""

from __future__ import annotations

import click
import torch
from rich.table import Table

from editors.covariances import CorpusCovariance, fetch_moments
from editors.hparams import parse_layers
from experiments.console import console
from lm.loading import load

SHARES = (0.001, 0.003, 0.01, 0.03, 0.1)
REFERENCE_THRESHOLD = 2e-2


@click.command()
@click.option("--model", "model_name", default="default", show_default=True)
@click.option("--layers", default="3-7", show_default=True)
@click.option("--tokens", type=click.IntRange(min=1), default=100_000, show_default=True)
def main(model_name: str, layers: str, tokens: int) -> None:
    model, tok = load(model_name)
    moments = fetch_moments(CorpusCovariance(token_budget=tokens), model, tok, parse_layers(layers))
    table = Table(title=f"Null-space dimension kept (of d_ff) per layer, {model_name}, {tokens} tokens")
    for column in ("Layer", "trace(C)", *(f"≤{100 * share:g}%" for share in SHARES), "τ = 2e-2: dims",
                   "τ = 2e-2: energy"):
        table.add_column(column, justify="right")
    for layer, moment in moments.items():
        C = moment.matrix().double()
        eigenvalues = torch.linalg.eigvalsh((C + C.T) / 2).clamp_min(0)
        cumulative = eigenvalues.cumsum(0) / eigenvalues.sum()
        below = eigenvalues < REFERENCE_THRESHOLD
        table.add_row(str(layer), f"{float(eigenvalues.sum()):.1f}",
                      *(str(int((cumulative <= share).sum())) for share in SHARES),
                      f"{int(below.sum())} / {len(eigenvalues)}",
                      f"{100 * float(eigenvalues[below].sum() / eigenvalues.sum()):.1f}%")
    console().print(table)


if __name__ == "__main__":
    main()
