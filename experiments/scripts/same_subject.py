"""Same-subject stress: key–value editors on batches whose requests share one subject.

    python -m experiments.scripts.same_subject [--sizes 1,2,5,10,20,max] [--seed 0]
        [--editors memit,memit_prompt_last,memit_merge,pmet,alphaedit,ft_l] [--natural 100]
        [--split test] [--set memit_merge:shared_v_lr=1] [--out results.json] [--threads 1]

CounterFact test records (train with `--split train`, for tuning), one per relation (data.batches.same_and_distinct_subject_sets), each
set edited twice: with the records' own subjects, and with every subject replaced by "John
Smith". Sizes are prefixes of the largest pair, so a larger set contains the smaller ones.
Every edit is applied, scored on its edit prompts (teacher-forced target accuracy, and
P(new) > P(old)) and rephrasings, and undone. AKD at the last MEMIT layer shows how close the
keys are. Then MEMIT and MEMIT-Merge edit one batch made of CounterFact's natural same-subject
groups (data.batches.natural_group_batch). Rows are also written to `--out` as they finish.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import torch
from rich.table import Table

from data.batches import natural_group_batch, same_and_distinct_subject_sets
from data.benchmarks import load_benchmark
from data.relations import infer_relations
from editors.akd import batch_akd
from editors.hparams import load_hparams
from editors.registry import make_editor
from experiments.console import console, fail, progress_bar
from lm.files import write_json_atomic
from lm.loading import load
from lm.scoring import LMScorer
from metrics.efficacy import efficacy_score, token_accuracy


@dataclass(frozen=True)
class Variant:
    label: str
    editor: str
    overrides: dict


VARIANTS = {
    "memit": Variant("MEMIT", "memit", {}),
    "memit_prompt_last": Variant("MEMIT, key at last prompt token", "memit", {"key_token": "prompt_last"}),
    "memit_merge": Variant("MEMIT-Merge", "memit_merge", {}),
    "memit_merge_key_distance": Variant("MEMIT-Merge, key-distance groups", "memit_merge", {"grouping": "key_distance"}),
    "pmet": Variant("PMET", "pmet", {}),
    "alphaedit": Variant("AlphaEdit", "alphaedit", {}),
    "ft_l": Variant("FT-L", "ft_l", {}),
}
DEFAULT_VARIANTS = "memit,memit_prompt_last,memit_merge,pmet,alphaedit,ft_l"


def with_settings(variant: Variant, name: str, settings: tuple[str, ...]) -> Variant:
    """The variant with every `name:key=value` of `settings` added to its overrides."""
    overrides = dict(variant.overrides)
    for setting in settings:
        target, _, assignment = setting.partition(":")
        key, equals, value = assignment.partition("=")
        if not equals or target not in VARIANTS:
            raise click.BadParameter(f"{setting!r} is not VARIANT:KEY=VALUE with a known variant.")
        if target == name:
            overrides[key.strip()] = value.strip()
    return Variant(variant.label, variant.editor, overrides)


def run_edit(editor, model, tok, requests) -> dict[str, Any]:
    started = time.perf_counter()
    applied = editor.apply(model, tok, list(requests))
    try:
        result = efficacy_and_generality(applied.scorer, requests)
    finally:
        applied.undo()
    result["seconds"] = time.perf_counter() - started
    info = applied.info
    for key in ("value_nll_mean", "converged", "group_sizes"):
        if key in info:
            result[key] = info[key]
    return result


def parse_sizes(text: str, largest: int) -> list[int]:
    sizes = []
    for part in text.split(","):
        size = largest if part.strip() == "max" else int(part)
        if not 1 <= size <= largest:
            raise click.BadParameter(f"size {size} is outside 1-{largest} (the number of relations).")
        sizes.append(size)
    return sorted(set(sizes))


@click.command()
@click.option("--sizes", default="1,2,5,10,20,max", show_default=True, help="Batch sizes ('max': one per relation).")
@click.option("--editors", "variant_names", default=DEFAULT_VARIANTS, show_default=True,
              help=f"Comma-separated, from: {', '.join(VARIANTS)}.")
@click.option("--natural", type=click.IntRange(min=0), default=100, show_default=True,
              help="Size of the natural same-subject batch (0: skip).")
@click.option("--split", type=click.Choice(["test", "train"]), default="test", show_default=True,
              help="CounterFact split the sets are drawn from (tune on train).")
@click.option("--set", "settings", multiple=True, metavar="VARIANT:KEY=VALUE",
              help="Override one hyper-parameter of one variant, e.g. memit_merge:shared_v_lr=1.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None, help="JSON rows.")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="Torch intra-op threads.")
@click.option("--quiet", is_flag=True)
def main(sizes: str, variant_names: str, natural: int, split: str, settings: tuple[str, ...], seed: int,
         out: Path | None, threads: int | None, quiet: bool) -> None:
    if threads:
        torch.set_num_threads(threads)
    unknown = [n for n in variant_names.split(",") if n not in VARIANTS]
    if unknown:
        fail(f"Unknown editor variant {unknown[0]!r}; choose from {', '.join(VARIANTS)}.")
    variants = [with_settings(VARIANTS[n], n, settings) for n in variant_names.split(",")]
    model, tok = load("default")
    train, test = load_benchmark("counterfact", "train"), load_benchmark("counterfact", "test")
    relations = infer_relations(train + test)
    pool = test if split == "test" else train
    largest = len({relations.relation_of(r) for r in pool})
    try:
        chosen_sizes = parse_sizes(sizes, largest)
        pair = same_and_distinct_subject_sets(pool, max(chosen_sizes), seed, relations=relations)
    except ValueError as error:
        fail(str(error))
    last_layer = load_hparams("memit", model.config.model_type).last_layer
    rows: list[dict[str, Any]] = []

    def record(row: dict[str, Any]) -> None:
        rows.append(row)
        if out is not None:
            write_json_atomic(out, {"seed": seed, "split": split, "settings": list(settings), "rows": rows})

    unedited = LMScorer(model, tok)
    for size in chosen_sizes:
        for kind, requests in (("same", pair.same_subject[:size]), ("distinct", pair.distinct_subject[:size])):
            akd = batch_akd(model, tok, requests, [last_layer])[last_layer] if size > 1 else float("nan")
            record({"variant": "unedited", "set": kind, "size": size, "akd": akd, **efficacy_and_generality(unedited, requests)})

    natural_batch = natural_group_batch(pool, natural, seed) if natural else []
    natural_variants = [v for v in variants if v.editor in ("memit", "memit_merge") and v.overrides.get("key_token") is None]
    total = len(variants) * len(chosen_sizes) * 2 + len(natural_variants)
    screen = console(quiet)
    with progress_bar(screen, "same-subject stress", "edit") as update:
        done = 0
        for variant in variants:
            editor = make_editor(variant.editor, model, variant.overrides)
            for size in chosen_sizes:
                for kind, requests in (("same", pair.same_subject[:size]), ("distinct", pair.distinct_subject[:size])):
                    record({"variant": variant.label, "set": kind, "size": size, **run_edit(editor, model, tok, requests)})
                    done += 1
                    update(done, total)
            if variant in natural_variants:
                record({"variant": variant.label, "set": "natural groups", "size": len(natural_batch),
                        **run_edit(editor, model, tok, natural_batch)})
                done += 1
                update(done, total)
    console().print(stress_table(rows, chosen_sizes, last_layer))
    if natural_batch:
        console().print(natural_table(rows))


def stress_table(rows: list[dict[str, Any]], sizes: list[int], layer: int) -> Table:
    table = Table(title=f"Same-subject stress, one CounterFact record per relation (AKD at layer {layer})")
    for column in ("editor", "size", "acc same", "acc distinct", "P>P same", "P>P distinct",
                   "gen acc same", "gen acc distinct", "AKD same", "AKD distinct"):
        table.add_column(column, justify="left" if column == "editor" else "right")
    found = {(r["variant"], r["set"], r["size"]): r for r in rows}
    akd = {(r["set"], r["size"]): r.get("akd", float("nan")) for r in rows if r["variant"] == "unedited"}
    for variant in dict.fromkeys(r["variant"] for r in rows if r["set"] in ("same", "distinct")):
        for size in sizes:
            same, distinct = found.get((variant, "same", size)), found.get((variant, "distinct", size))
            if same is None or distinct is None:
                continue
            table.add_row(
                variant, str(size),
                *(f"{row[key]:.2f}" for key in ("efficacy_accuracy", "efficacy_score", "generality_accuracy")
                  for row in (same, distinct)),
                f"{akd[('same', size)]:.1f}", f"{akd[('distinct', size)]:.1f}",
            )
    return table


def natural_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(title="A batch of CounterFact's natural same-subject groups")
    for column in ("editor", "size", "efficacy acc", "P(new)>P(old)", "gen acc", "seconds"):
        table.add_column(column, justify="left" if column == "editor" else "right")
    for row in rows:
        if row["set"] == "natural groups":
            table.add_row(row["variant"], str(row["size"]), f"{row['efficacy_accuracy']:.2f}",
                          f"{row['efficacy_score']:.2f}", f"{row['generality_accuracy']:.2f}", f"{row['seconds']:.0f}")
    return table



def efficacy_and_generality(scorer, requests) -> dict[str, float]:
    """Token accuracy and P(new) > P(old) on the edit prompts and on their first rephrasings."""
    prompts = [r.prompt for r in requests]
    rephrased = [r.rephrase_prompts[0] for r in requests]
    new = scorer.score(prompts, [r.target_new for r in requests])
    old = scorer.score(prompts, [r.target_true for r in requests])
    new_g = scorer.score(rephrased, [r.target_new for r in requests])
    old_g = scorer.score(rephrased, [r.target_true for r in requests])
    return {
        "efficacy_accuracy": token_accuracy(new),
        "efficacy_score": efficacy_score(new, old),
        "generality_accuracy": token_accuracy(new_g),
        "generality_score": efficacy_score(new_g, old_g),
    }

if __name__ == "__main__":
    main()
