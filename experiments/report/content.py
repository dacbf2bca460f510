"""What a report says, decided once for every output format: provenance, the results table,
the validator's ceilings, retrieval diagnostics, plots, AKD analyses and "Which method?".

Everything comes from the `Report` alone (never from the clock or the machine rendering it),
in the report's own run order, so rendering twice gives the same document.
"""

from __future__ import annotations

import json
import statistics
from typing import Sequence

from experiments.records import RunRecord
from experiments.report.advice import Thresholds, which_method
from experiments.report.analyses import (
    AkdPoint, akd_points, correlations, other_analyses, run_labels,
)
from experiments.report.blocks import Bullet, Bullets, Code, Document, Paragraph, Section, Table
from experiments.report.document import Report
from experiments.report.formatting import MISSING, fixed, group_label, percent, seconds
from experiments.report.plots import RETRIEVAL_OUTCOMES, report_plots, tradeoff_plot
from experiments.report.rows import ResultRow, final_rows, locality_groups, result_rows
from experiments.tables import plus_minus

CEILING_MARK = "†"
REFERENCE_EDITOR = "unedited"
EXAMPLES_PER_EDITOR = 3
CONVENTIONS = (
    "Scores are percentages, each ± the half-width of its 95% bootstrap interval over the "
    "edits (Flu: over the generated texts; ΔPPL: over the held-out pieces); the exact bounds "
    "are in report.json and results.csv. \"Eff acc\" and \"Gen acc\" are the teacher-forced "
    "accuracy of the new target's tokens (RECIPE, MedREK, EasyEdit); \"Eff score\" and "
    "\"Gen score\" are MEMIT's score, the share of prompts where the new target's mean "
    "per-token NLL is below the old target's. Locality is agreement with the unedited model on "
    "unrelated prompts, per probe group; NS is MEMIT's neighbourhood score, the share of those "
    "prompts still preferring their own answer to the new target (per-token). Avg is MedREK's "
    "eq. 13 on the token-accuracy convention. Flu is the n-gram entropy ×100 of prompt + "
    "continuation, sampled top-5 to a fixed number of new tokens (see Run). PPL is held-out "
    "WikiText-2 perplexity, each piece scored after its preceding words (which a retrieval "
    "editor retrieves with); ΔPPL is its relative change. Edit s and Scoring s are wall-clock "
    "seconds, Edit s including what any value vectors reused from an earlier run cost when "
    "they were optimised, so the run order does not make an editor look faster. "
    "Single/batch runs show one row (all batches); sequential runs show one row per step, "
    "scored on everything edited so far. "
    f"{CEILING_MARK} marks a figure the batch validator caps below 100% (see Ceilings)."
)


def build_document(report: Report, thresholds: Thresholds = Thresholds()) -> Document:
    """The answer first (results, trade-off plot, advice), then examples and diagnostics, then
    how the run was made."""
    labels = run_labels(report.analyses, report.runs)
    rows = result_rows(report.runs, labels)
    finals = final_rows(rows)
    akd = akd_points(report.analyses, report.runs)
    sections = [_results(report.runs, rows, finals)]
    sections += which_method(finals, rows, thresholds)
    sections += _seed_spread(finals)
    sections += _examples(finals)
    sections += _retrieval(finals)
    plots = report_plots(rows, finals, akd)
    if plots:
        sections.append(Section("Plots", plots))
    sections += _akd(report, akd)
    further = other_analyses(report.analyses)
    if further:
        code = Code(json.dumps(further, indent=2, sort_keys=True))
        sections.append(Section("Further analyses", (code,)))
    sections.append(_provenance(report))
    benchmarks = ", ".join(dict.fromkeys(run.dataset.benchmark for run in report.runs))
    return Document(f"editscope {report.command}: {benchmarks}", tuple(sections))


def several_seeds(runs: Sequence[RunRecord]) -> bool:
    return len({run.seed for run in runs}) > 1


def results_header(runs: Sequence[RunRecord], labelled: bool) -> tuple[str, ...]:
    """Column names of the results table; CSV uses its own machine-friendly names."""
    return (
        "Run", "Editor", *(("Label",) if labelled else ()), "Mode", "Batch", "Step",
        *(("Seed",) if several_seeds(runs) else ()), "Edits",
        "Eff acc", "Eff score", "Gen acc", "Gen score",
        *(group_label(group) for group in locality_groups(runs)),
        "Loc mean", "NS", "Flu", "Avg", "PPL before → after", "ΔPPL %", "Edit s", "Scoring s",
    )


def _provenance(report: Report) -> Section:
    runs = report.runs
    items = [("Command", report.command), ("Created", report.created)]
    items += [(f"Argument {key}", json.dumps(value, sort_keys=True))
              for key, value in sorted(report.arguments.items())]
    items += [("Model", f"{model.model_type}, {model.parameters:,} parameters, "
                        f"fingerprint {model.fingerprint}")
              for model in dict.fromkeys(run.model for run in runs)]
    items += [("Benchmark", f"{data.benchmark}" + (f" ({data.split})" if data.split else "")
               + f", {data.file or 'built in memory'}, sha256 {data.sha256}" + _target_notes(data))
              for data in dict.fromkeys(run.dataset for run in runs)]
    items.append(("Seed", ", ".join(str(seed) for seed in sorted({run.seed for run in runs}))))
    items += [("Settings", ", ".join(f"{key} {value}" for key, value in sorted(vars(found).items())))
              for found in dict.fromkeys(run.settings for run in runs)]
    versions: dict[str, list[str]] = {}
    for run in runs:
        for package, version in run.versions.items():
            versions.setdefault(package, [])
            if version not in versions[package]:
                versions[package].append(version)
    items += [(f"Version {package}", " / ".join(found))
              for package, found in sorted(versions.items())]
    return Section("Run", (
        Paragraph("How this report was made: arguments, model, data, settings and versions."),
        Table(("Item", "Value"), tuple(items), left_columns=2),
        Paragraph("Hyper-parameters of every run are in report.json."),
    ))


def _target_notes(data) -> str:
    """What was cut from long targets and which scores are absent (experiments.edit_sets)."""
    notes = []
    if data.targets_cut or data.locality_answers_cut:
        notes.append(f"{data.targets_cut} target(s) and {data.locality_answers_cut} locality answer(s) "
                     f"cut to {data.max_target_tokens} tokens")
    if data.without_target_true:
        notes.append(f"{data.without_target_true} request(s) without an old target: their "
                     "scores (Eff/Gen score, NS) are absent")
    return "".join(f"; {note}" for note in notes)


def _results(runs: Sequence[RunRecord], rows: Sequence[ResultRow],
             finals: Sequence[ResultRow]) -> Section:
    labelled = any(row.label for row in rows)
    seeded = several_seeds(runs)
    groups = locality_groups(runs)
    table_rows = []
    for row in rows:
        result, bounds = row.aggregate, row.intervals
        efficacy_mark = CEILING_MARK if row.ceiling_efficacy < 1 else ""
        table_rows.append((
            str(row.run_number), row.editor, *((row.label or MISSING,) if labelled else ()),
            row.mode, str(row.batch_size), MISSING if row.step is None else str(row.step),
            *((str(row.run.seed),) if seeded else ()), str(row.requests),
            *(plus_minus(getattr(result, name), bounds.get(name))
              + (efficacy_mark if name.startswith("efficacy") else "")
              for name in ("efficacy_accuracy", "efficacy_score", "generality_accuracy",
                           "generality_score")),
            *(plus_minus(result.locality.get(group), bounds.get(f"locality.{group}"))
              + (CEILING_MARK if row.ceiling_locality.get(group, 1.0) < 1 else "")
              for group in groups),
            plus_minus(result.locality_mean, bounds.get("locality_mean")),
            plus_minus(result.locality_score, bounds.get("locality_score")),
            plus_minus(result.health.fluency, bounds.get("fluency"), scale=1),
            plus_minus(result.average, bounds.get("average")),
            f"{fixed(row.perplexity_before, 2)} → {fixed(result.health.perplexity_after, 2)}",
            plus_minus(row.perplexity_change, bounds.get("perplexity_change"), decimals=2),
            seconds(row.edit_seconds), seconds(row.scoring_seconds),
        ))
    blocks: list = [Table(results_header(runs, labelled), tuple(table_rows),
                          left_columns=4 if labelled else 3)]
    tradeoff = tradeoff_plot(finals)
    if tradeoff is not None:
        blocks.append(tradeoff)
    blocks.append(Paragraph(CONVENTIONS))
    by_sentence: dict[str, list[str]] = {}
    for row in rows:
        where = str(row.run_number) + (f" step {row.step}" if row.step is not None else "")
        for sentence in row.ceiling_sentences:
            by_sentence.setdefault(sentence, []).append(where)
    blocks.append(Paragraph("Ceilings: " + (
        "the batch validator found confounds that cap these figures." if by_sentence else
        "the batch validator found no confound; every figure can reach 100%.")))
    if by_sentence:
        blocks.append(Bullets(tuple(
            Bullet(f"{CEILING_MARK} Run{'s' if len(where) > 1 else ''} {', '.join(where)}", sentence)
            for sentence, where in by_sentence.items())))
    return Section("Results", tuple(blocks))


def _seed_spread(finals: Sequence[ResultRow]) -> list[Section]:
    """Mean and spread across seeds of each editor and setting run with several seeds."""
    grouped: dict[tuple, list[ResultRow]] = {}
    for row in finals:
        key = (row.run.model.fingerprint, row.benchmark, row.mode, row.batch_size, row.label,
               row.editor)
        grouped.setdefault(key, []).append(row)
    figures = (("Eff acc", lambda r: r.aggregate.efficacy_accuracy, 100),
               ("Eff score", lambda r: r.aggregate.efficacy_score, 100),
               ("Gen acc", lambda r: r.aggregate.generality_accuracy, 100),
               ("Loc mean", lambda r: r.aggregate.locality_mean, 100),
               ("Flu", lambda r: r.aggregate.health.fluency, 1),
               ("Avg", lambda r: r.aggregate.average, 100),
               ("ΔPPL %", lambda r: r.perplexity_change, 100))
    table_rows = []
    for members in grouped.values():
        seeds = sorted({row.run.seed for row in members})
        if len(seeds) < 2:
            continue
        cells = []
        for _, value, scale in figures:
            values = [scale * value(row) for row in members if value(row) is not None]
            cells.append(f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}"
                         if len(values) >= 2 else MISSING)
        table_rows.append((members[0].name, ", ".join(map(str, seeds)), *cells))
    if not table_rows:
        return []
    return [Section("Across seeds", (
        Paragraph("Each seed draws its own batch of edits; mean ± standard deviation of the "
                  "final scores across seeds (percentages; Flu as measured)."),
        Table(("Editor and setting", "Seeds", *(name for name, _, _ in figures)),
              tuple(table_rows), left_columns=2),
    ))]


def _examples(finals: Sequence[ResultRow]) -> list[Section]:
    """"What it says now": per editor, a few fluency texts beside the unedited model's
    continuation of the same prompt (same setting), so a reader sees what an edit did."""
    references = {row.setting: row for row in finals
                  if row.editor == REFERENCE_EDITOR and row.aggregate.health.fluency_samples}
    blocks: list = []
    for row in finals:
        samples = row.aggregate.health.fluency_samples
        if row.editor == REFERENCE_EDITOR or not samples:
            continue
        reference = references.get(row.setting)
        before = ({s.prompt: s for s in reference.aggregate.health.fluency_samples}
                  if reference else {})
        shown = samples[:EXAMPLES_PER_EDITOR]
        blocks.append(Paragraph(f"Run {row.run_number}, {row.name}:"))
        blocks.append(Table(
            ("Prompt", "Unedited model", row.editor),
            tuple((s.prompt, before[s.prompt].continuation if s.prompt in before else MISSING,
                   s.continuation) for s in shown),
            left_columns=3))
    if not blocks:
        return []
    intro = Paragraph(
        f"The first {EXAMPLES_PER_EDITOR} fluency texts of each editor beside the unedited "
        "model's continuation of the same prompt (sampled with the same seed), so the damage an "
        "edit did to free text can be read, not only its Flu. Every text is in report.json.")
    return [Section("What it says now", (intro, *blocks))]


def _retrieval(finals: Sequence[ResultRow]) -> list[Section]:
    with_retrieval = [row for row in finals if row.retrieval is not None]
    if not with_retrieval:
        return []
    rows = tuple(
        (str(row.run_number), row.name,
         *(percent(getattr(row.retrieval, outcome)) for outcome in RETRIEVAL_OUTCOMES),
         str(row.retrieval.edit_queries), str(row.retrieval.locality_queries))
        for row in with_retrieval)
    header = ("Run", "Editor and setting", "Correct", "Wrong", "None", "Unwanted", "Edit queries",
              "Locality queries")
    return [Section("Retrieval diagnostics", (
        Paragraph("Shares of edit queries that retrieved the right edit, a wrong one or none, "
                  "and of locality queries that retrieved any edit (unwanted)."),
        Table(header, rows, left_columns=2),
    ))]


def _akd(report: Report, akd: Sequence[AkdPoint]) -> list[Section]:
    found = correlations(report.analyses)
    if not akd and not found:
        return []
    blocks = []
    if akd:
        rows = []
        for point in akd:
            run = report.runs[point.run_index]
            (step,) = [s for s in run.steps if s.step == point.step]
            rows.append((str(point.run_index + 1), run.editor, str(point.step), str(point.layer),
                         fixed(point.akd, 3), percent(step.aggregate.efficacy_accuracy)))
        blocks.append(Table(("Run", "Editor", "Step", "Layer", "AKD", "Eff (token acc.)"),
                            tuple(rows), left_columns=2))
    if found:
        blocks.append(Table(
            ("x", "y", "why undefined", "rho", "p", "pairs"),
            tuple((c.x, c.y, c.reason or MISSING, fixed(c.rho, 3), fixed(c.p, 4), str(c.n))
                  for c in found),
            left_columns=3))
    return [Section("Average Key Distance", tuple(blocks))]
