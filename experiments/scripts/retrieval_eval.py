"""RECIPE and MedREK (shipped checkpoints) on 100 MedCF++ and 100 CounterFact test edits.

    python -m experiments.scripts.retrieval_eval [--edits 100] [--seed 0] [--out FILE]
        [--checkpoint NAME=PATH ...]

Each batch is drawn with `data.batches.unconfounded_batch` (seeded, exactly `--edits` records, no
locality probe equal to an edited prompt, no prompt with two targets), and `validate_batch`
confirms it; every figure is printed beside what the batch allows at best.
Efficacy and generality are teacher-forced target token accuracy; locality is argmax agreement
with the unedited model per probe group (MedCF++: TD, EM, SS, TS) and their mean; retrieval is
correct / wrong / none over efficacy + generality queries and unwanted over locality probes.
"""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.table import Table

from data.batches import unconfounded_batch, validate_batch
from data.benchmarks import load_benchmark
from experiments.console import console, fail
from lm.loading import load
from lm.scoring import LMScorer
from metrics.efficacy import token_accuracy
from retrieval.checkpoint import CheckpointError
from retrieval.editor import RetrievalEditor
from retrieval.encoder import KnowledgeEncoder
from retrieval.evaluation import distinct_key_share, evaluate_batch, unedited_locality_argmax

BENCHMARKS = ("medcfpp", "counterfact")


@click.command()
@click.option("--edits", type=int, default=100, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Write all numbers as JSON.")
@click.option("--checkpoint", "checkpoints", multiple=True,
              help="NAME=PATH of a checkpoint to score [default: recipe and medrek, shipped].")
def main(edits: int, seed: int, out: Path | None, checkpoints: tuple[str, ...]) -> None:
    terminal = console()
    model, tok = load("default")
    encoder = KnowledgeEncoder.load("default", device=model.device)
    sources = dict(item.split("=", 1) for item in checkpoints) or {"recipe": "recipe", "medrek": "medrek"}
    try:
        editors = {name: RetrievalEditor.from_checkpoint(path, encoder) for name, path in sources.items()}
    except (CheckpointError, ValueError) as error:
        fail(str(error))
    results = {}
    for benchmark in BENCHMARKS:
        checked = validate_batch(unconfounded_batch(load_benchmark(benchmark, "test"), edits, seed))
        requests = list(checked.requests)
        terminal.print(f"[bold]{benchmark} test, {len(requests)} edits (seed {seed})[/bold]: "
                       f"{checked.ceiling.sentence}")
        plain = LMScorer(model, tok)
        prompts, targets = [r.prompt for r in requests], [r.target_new for r in requests]
        unedited = unedited_locality_argmax(model, tok, requests)
        results[benchmark] = {
            "ceiling": checked.ceiling.sentence,
            "unedited_efficacy": token_accuracy(plain.score(prompts, targets)),
        }
        table = Table("editor", "efficacy", "generality", *checked.ceiling.locality, "locality mean",
                      "correct retrieval (eff+gen)", "wrong", "none", "unwanted (loc)", "keys sim>0.6")
        groups = checked.ceiling.locality
        table.add_row("unedited", f"{results[benchmark]['unedited_efficacy']:.3f}", "",
                      *[""] * len(groups), "1.000", "", "", "", "", "")
        for name, editor in editors.items():
            evaluation = evaluate_batch(editor, model, tok, requests, unedited)
            reachable = distinct_key_share(requests, editor.network.key_text)
            results[benchmark][name] = {**evaluation.to_json(), "correct_retrieval_ceiling": reachable}
            rates = evaluation.retrieval
            table.add_row(
                name,
                f"{evaluation.efficacy:.3f} (≤{checked.ceiling.efficacy:.2f})",
                f"{evaluation.generality:.3f}",
                *(f"{evaluation.locality[group]:.3f} (≤{ceiling:.2f})" for group, ceiling in groups.items()),
                f"{evaluation.locality_mean:.3f}",
                f"{rates.correct:.3f} (≤{reachable:.2f})",
                f"{rates.wrong:.3f}", f"{rates.none:.3f}", f"{rates.unwanted:.3f}",
                f"{evaluation.key_high_similarity:.2f}",
            )
        terminal.print(table)
    if out is not None:
        out.write_text(json.dumps(results, indent=1) + "\n")
        terminal.print(f"Wrote {out}.")


if __name__ == "__main__":
    main()
