"""Hand-built run records for the report tests (no model, no harness: milliseconds).

`run(...)` returns a real `RunRecord` (via `RunRecord.from_dict`) whose scores are given
directly; `scenario()` is a small comparison with MedCF locality groups, two batch sizes per
editor, a sequential run, a retrieval editor and a confounded batch. This file holds no tests.
"""

from __future__ import annotations

from experiments.records import RunRecord
from experiments.report import Report

GROUPS = ("td", "em", "ss", "ts")
CLEAN = "Best achievable on this batch of {n}: efficacy 100.0%, locality td 100.0%."
CONFOUNDED = ("Best achievable on this batch of {n}: efficacy 90.0% (1 edits are unreachable: "
              "another edit gives their prompt a different target), locality td 80.0%.")


def aggregate(requests, eff, loc, gen=None, eff_score=None, gen_score=None, fluency=600.0,
              ppl_after=20.0, retrieval=None, width=0.03):
    """An aggregate whose every figure has a 95% interval of ± `width` (None: no intervals)."""
    gen = eff if gen is None else gen
    loc_mean = sum(loc.values()) / len(loc) if loc else None
    figures = {"efficacy_accuracy": eff, "generality_accuracy": gen, "locality_mean": loc_mean,
               **{f"locality.{group}": value for group, value in loc.items()}}
    figures["average"] = ((eff + gen) / 2 + loc_mean) / 2 if loc_mean is not None else None
    intervals = ({name: [value - width, value + width] for name, value in figures.items()
                  if value is not None} if width is not None else {})
    return {
        "requests": requests, "efficacy_accuracy": eff,
        "efficacy_score": eff if eff_score is None else eff_score,
        "generality_accuracy": gen, "generality_score": gen if gen_score is None else gen_score,
        "locality": dict(loc), "locality_mean": loc_mean,
        "average": ((eff + gen) / 2 + loc_mean) / 2 if loc_mean is not None else None,
        "health": {"fluency": fluency, "fluency_texts": 2, "perplexity_after": ppl_after,
                   "retrieval": retrieval},
        "intervals": intervals,
    }


def retrieval_summary(correct=0.8, wrong=0.1, none=0.1, unwanted=0.05):
    return {"correct": correct, "wrong": wrong, "none": none, "unwanted": unwanted,
            "edit_queries": 40, "locality_queries": 160}


def step(number, requests, result, confounded=False):
    return {
        "step": number, "applied_indices": list(range(requests)),
        "validation": {
            "requests": requests, "locality_overlaps": 1 if confounded else 0, "self_overlaps": 0,
            "contradictory_records": 2 if confounded else 0,
            "ceiling_efficacy": 0.9 if confounded else 1.0,
            "ceiling_locality": {"td": 0.8 if confounded else 1.0},
            "ceiling_sentence": (CONFOUNDED if confounded else CLEAN).format(n=requests),
        },
        "requests": [], "aggregate": result,
    }


def run(editor, batch_size=10, eff=0.9, loc=None, mode="batch", steps=None, seed=0,
        edit_seconds=1.0, ppl_before=20.0, ppl_after=21.0, retrieval=None, confounded=False,
        benchmark="medcfpp", **scores):
    """A run record; `steps` (list of aggregates) makes a sequential run, else one batch."""
    loc = {group: 0.97 for group in GROUPS} if loc is None else loc
    if steps is None:
        result = aggregate(batch_size, eff, loc, ppl_after=ppl_after, retrieval=retrieval, **scores)
        step_list = [step(1, batch_size, result, confounded)]
    else:
        step_list = [step(number, s["requests"], s) for number, s in enumerate(steps, start=1)]
        result = steps[-1]
    edits = batch_size * len(step_list)
    return RunRecord.from_dict({
        "format": 1, "mode": mode, "batch_size": batch_size, "editor": editor,
        "hparams": {"layers": [4, 5]} if editor != "recipe" else None,
        "model": {"fingerprint": "f" * 64, "model_type": "llama", "parameters": 135_000_000},
        "seed": seed,
        "dataset": {"benchmark": benchmark, "split": "test", "file": f"shipped:{benchmark}/test.json.gz",
                    "sha256": "a" * 64},
        "record_indices": list(range(edits)),
        "settings": {"fluency_prompts": 2, "fluency_new_tokens": 3, "perplexity_tokens": 40,
                     "perplexity_corpus": "wikitext2-test"},
        "versions": {"python": "3.11.7", "torch": "2.13.0", "transformers": "4.50.0",
                     "editscope": "0.1.0"},
        "perplexity_before": ppl_before,
        "steps": step_list, "aggregate": result,
        "timings": {
            "steps": [{"edit_seconds": edit_seconds / len(step_list), "scoring_seconds": 0.5,
                       "undo_seconds": 0.0} for _ in step_list],
            "baseline_seconds": 0.1, "final_undo_seconds": 0.0,
            "total_seconds": edit_seconds + 0.6 * len(step_list),
        },
    })


def sequential(editor, efficacies, batch_size=5):
    steps = [aggregate(batch_size * number, eff, {group: 0.9 for group in GROUPS})
             for number, eff in enumerate(efficacies, start=1)]
    return run(editor, batch_size=batch_size, mode="sequential", steps=steps)


def scenario_runs(memit_locality=0.97, merge_locality=0.90):
    """memit and memit-merge at batch 10 and 40 (the batch-10 pair's locality given), recipe
    with retrieval outcomes, a sequential memit run and the unedited reference at both sizes."""
    def groups(value):
        return {group: value for group in GROUPS}
    return [
        run("memit", 10, eff=0.88, loc=groups(memit_locality), edit_seconds=8.0, ppl_after=23.0,
            confounded=True),
        run("memit-merge", 10, eff=0.99, loc=groups(merge_locality), edit_seconds=9.0, ppl_after=22.0),
        run("recipe", 10, eff=0.70, loc=groups(0.80), edit_seconds=0.05, ppl_after=20.0,
            retrieval=retrieval_summary()),
        run("unedited", 10, eff=0.02, loc=groups(1.0), edit_seconds=0.0, ppl_after=20.0),
        run("memit", 40, eff=0.60, loc=groups(0.85), edit_seconds=20.0),
        run("memit-merge", 40, eff=0.92, loc=groups(0.93), edit_seconds=22.0),
        sequential("memit", [1.0, 0.95, 0.7]),
        run("unedited", 40, eff=0.02, loc=groups(1.0), edit_seconds=0.0, ppl_after=20.0),
    ]


def scenario(**localities) -> Report:
    runs = scenario_runs(**localities)
    return Report(
        command="compare", arguments={"editors": ["memit", "memit-merge", "recipe"], "seed": 0},
        runs=tuple(runs), created="2026-05-09T07:35:25+00:00",
        analyses={
            "akd": [{"run_index": 0, "step": 1, "layer": 4, "akd": 12.5},
                    {"run_index": 4, "step": 1, "layer": 4, "akd": 3.25},
                    {"run_index": 6, "step": 2, "layer": 5, "akd": None}],
            "correlations": [{"x": "AKD layer 4", "y": "efficacy", "rho": 1.0, "p": None, "n": 2,
                              "reason": "only 2 finite pairs; need at least 3"}],
            "high_similarity_samples": {"recipe": 0.12},
        },
    )
