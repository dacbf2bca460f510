"""Choose MEMIT's layers and λ for the default model on CounterFact **train** records.

    python -m experiments.scripts.tune_memit [--n 100] [--seed 0] [--lambdas 500,1500,5000,15000]
        [--layer-sets 2-8,3-8,4-8,3-7] [--out tuning.json] [--threads 1]

One random batch of `n` train records (test records are never used here). The value vectors
depend only on the last edited layer l*, not on λ or the lower layers, so they are optimised
once per l* and every (layers, λ) pair only re-runs the spread. Each edit is scored on its edit
prompts and rephrasings (teacher-forced target accuracy, P(new) > P(old)) and on the records'
neighbourhood prompts (locality: unchanged argmax), then undone. The table is sorted by the
average of efficacy accuracy, generality accuracy and locality.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import torch

from data.batches import random_batch
from data.benchmarks import load_benchmark
from editors.applied import WeightEdit
from editors.covariances import CorpusCovariance, fetch_moments
from editors.hparams import load_hparams, parse_layers
from editors.kv_editor import prepare_batch
from editors.solve import memit_delta
from editors.spread import spread_over_layers
from editors.values import ValueOptions, optimise_values
from experiments.console import console, progress_bar
from experiments.scripts.tuning_scores import (
    edit_scores, locality_scores, print_ranked_table, scores_then_undo,
)
from lm.adapters import adapter_for
from lm.files import write_json_atomic
from lm.loading import load
from lm.scoring import LMScorer


@click.command()
@click.option("--n", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--lambdas", default="500,1500,5000,15000", show_default=True)
@click.option("--layer-sets", default="2-8,3-8,4-8,3-7", show_default=True, help="Comma-separated layer ranges.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None)
@click.option("--threads", type=click.IntRange(min=1), default=None)
@click.option("--quiet", is_flag=True)
def main(n: int, seed: int, lambdas: str, layer_sets: str, out: Path | None, threads: int | None, quiet: bool) -> None:
    if threads:
        torch.set_num_threads(threads)
    model, tok = load("default")
    requests = random_batch(load_benchmark("counterfact", "train"), n, seed)
    base = load_hparams("memit", model.config.model_type)
    sets = [parse_layers(text) for text in layer_sets.split(",")]
    lambda_values = [float(text) for text in lambdas.split(",")]
    adapter = adapter_for(model)
    scorer = LMScorer(model, tok)
    unedited_locality = [s.argmax_ids for s in locality_scores(scorer, requests)]
    rows: list[dict[str, Any]] = [{"layers": "unedited", "lambda": None,
                                   **edit_scores(scorer, requests, unedited_locality)}]
    covariance = CorpusCovariance(token_budget=base.mom2_tokens)
    moments = fetch_moments(covariance, model, tok, sorted({layer for s in sets for layer in s}))
    by_last: dict[int, list[tuple[int, ...]]] = {}
    for layers in sets:
        by_last.setdefault(layers[-1], []).append(layers)
    total = len(sets) * len(lambda_values)
    done = 0
    with progress_bar(console(quiet), "MEMIT tuning on CounterFact train", "edit") as update:
        for last, layer_group in by_last.items():
            hparams = load_hparams("memit", model.config.model_type, {"layers": list(layer_group[0])})
            batch = prepare_batch(model, tok, requests, hparams)
            block = adapter.block_name(last)
            values = optimise_values(model, last, batch.sites, batch.essence, batch.targets,
                                     [[i] for i in range(n)], (block,), ValueOptions.from_hparams(hparams))
            for layers in layer_group:
                for lam in lambda_values:
                    spread = spread_over_layers(
                        model, batch.sites, [[i] for i in range(n)], layers, block, values.targets(block),
                        solve=lambda layer, R, K, lam=lam: memit_delta(R, K, moments[layer].matrix(), lam),
                    )
                    applied = WeightEdit.apply(model, tok, spread.deltas)
                    result = scores_then_undo(applied, scorer, requests, unedited_locality)
                    rows.append({"layers": f"{layers[0]}-{layers[-1]}", "lambda": lam,
                                 "value_nll_mean": float(values.nll.nanmean()), **result})
                    if out is not None:
                        write_json_atomic(out, {"n": n, "seed": seed, "split": "train", "rows": rows})
                    done += 1
                    update(done, total)
    columns = ("layers", "lambda", "efficacy_accuracy", "efficacy_score", "generality_accuracy",
               "generality_score", "locality", "average")
    print_ranked_table(f"MEMIT on {n} CounterFact train records (seed {seed}), default model", rows, columns)


if __name__ == "__main__":
    main()
