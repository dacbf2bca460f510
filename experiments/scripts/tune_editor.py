"""Grid-search any editor's hyper-parameters on **train** records (CounterFact by default).

    python -m experiments.scripts.tune_editor --editor ft_l --grid norm_constraint=5e-4,5e-3,5e-2
        [--grid lr=5e-4,5e-3] [--benchmark counterfact|medcfpp|medversa] [--n 50] [--seed 0]
        [--out tuning.json] [--threads 1]

Every combination of the grid is applied to the same random batch of train records through
`make_editor(...).apply`, scored like `tune_memit` (efficacy and generality as teacher-forced
accuracy and P(new) > P(old), locality on the neighbourhood prompts) and undone. For MEMIT's
λ and layers use `tune_memit`, which reuses the value vectors across the grid.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import click
import torch

from data.batches import random_batch
from data.benchmarks import load_benchmark
from editors.registry import make_editor
from experiments.console import console, progress_bar
from experiments.scripts.tuning_scores import (
    edit_scores, locality_scores, print_ranked_table, scores_then_undo,
)
from lm.files import write_json_atomic
from lm.loading import load
from lm.scoring import LMScorer


@click.command()
@click.option("--editor", "editor_name", required=True)
@click.option("--grid", multiple=True, metavar="KEY=V1,V2", help="Values to try for one hyper-parameter.")
@click.option("--benchmark", type=click.Choice(["counterfact", "medcfpp", "medversa"]), default="counterfact",
              show_default=True, help="Its train split is used (never test records).")
@click.option("--n", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None)
@click.option("--threads", type=click.IntRange(min=1), default=None)
@click.option("--quiet", is_flag=True)
def main(editor_name: str, grid: tuple[str, ...], benchmark: str, n: int, seed: int, out: Path | None,
         threads: int | None, quiet: bool) -> None:
    if threads:
        torch.set_num_threads(threads)
    axes = []
    for spec in grid:
        key, _, values = spec.partition("=")
        axes.append([(key.strip(), value.strip()) for value in values.split(",")])
    model, tok = load("default")
    requests = random_batch(load_benchmark(benchmark, "train"), n, seed)
    scorer = LMScorer(model, tok)
    unedited_locality = [s.argmax_ids for s in locality_scores(scorer, requests)]
    rows: list[dict[str, Any]] = [{"setting": "unedited", **edit_scores(scorer, requests, unedited_locality)}]
    combinations = list(itertools.product(*axes))
    with progress_bar(console(quiet), f"{editor_name} tuning on {benchmark} train", "edit") as update:
        for done, combination in enumerate(combinations, start=1):
            overrides = dict(combination)
            applied = make_editor(editor_name, model, overrides).apply(model, tok, requests)
            result = scores_then_undo(applied, scorer, requests, unedited_locality)
            setting = " ".join(f"{k}={v}" for k, v in overrides.items()) or "defaults"
            rows.append({"setting": setting, "seconds": applied.info["seconds"]["total"], **result})
            if out is not None:
                write_json_atomic(out, {"editor": editor_name, "benchmark": benchmark, "n": n, "seed": seed, "split": "train", "rows": rows})
            update(done, len(combinations))
    columns = ("setting", "efficacy_accuracy", "efficacy_score", "generality_accuracy", "locality", "average")
    print_ranked_table(f"{editor_name} on {n} {benchmark} train records (seed {seed}), default model", rows, columns)


if __name__ == "__main__":
    main()
