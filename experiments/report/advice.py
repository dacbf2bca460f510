"""The "Which method?" section: recommendations computed from one report's numbers.

Every sentence below is the outcome of an explicit rule applied to the measured scores; when
the data cannot decide a rule, the section says so instead of guessing. The rules (thresholds
from `Thresholds`):

Within each setting (same model, benchmark, mode, batch size and run label) holding two or
more editors, comparing each run's final scores (a sequential run's last step):
1. Keeps locality: among runs with mean locality >= `locality`, the highest efficacy (token acc.).
2. Best Average: the highest MedREK eq. 13 Average.
3. Fastest to edit: the lowest edit time per edit.
4. Hurts perplexity least: the smallest relative perplexity increase, after vs before.
Across settings:
5. Survives same-subject batches: an editor whose efficacy drops by less than
   `same_subject_drop` from its distinct-subject run to its same-subject run (same benchmark,
   mode and batch size).
6. Holds up as batches grow: per editor run at several batch sizes, the largest batch size
   at which efficacy is still >= `efficacy_kept`.
7. Survives sequential editing: per sequential run, the last step up to which efficacy on
   everything edited so far stays >= `efficacy_kept`.
Caveats: validator ceilings below 100%, runs with fewer than `few_requests` scored edits,
winners ahead by less than one edit's share of the score, and single-seed comparisons.

The unedited reference run (editor "unedited") is never recommended: it edits nothing.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Callable, Sequence

from experiments.report.analyses import DISTINCT_SUBJECT, SAME_SUBJECT
from experiments.report.blocks import Bullet, Bullets, Paragraph, Section
from experiments.report.formatting import group_label, percent
from experiments.report.rows import ResultRow

REFERENCE_EDITORS = ("unedited",)


@dataclass(frozen=True)
class Thresholds:
    locality: float = 0.95  # mean locality a run must keep to count as harmless
    same_subject_drop: float = 0.10  # efficacy drop (distinct → same subject) still "surviving"
    efficacy_kept: float = 0.90  # efficacy that still counts as "the edits work"
    few_requests: int = 30  # below this, one edit moves a score by more than 3.3 points


def which_method(finals: Sequence[ResultRow], rows: Sequence[ResultRow],
                 thresholds: Thresholds = Thresholds()) -> tuple[Section, ...]:
    """The "Which method?" section and its subsections. `finals`: one row per run; `rows`:
    the full results table (sequential runs contribute one row per step)."""
    candidates = [row for row in finals if row.editor not in REFERENCE_EDITORS]
    intro = Paragraph(
        "Each recommendation below is computed from this report's numbers by a fixed rule: "
        f"(1) among runs keeping mean locality ≥ {percent(thresholds.locality)}%, the highest "
        "efficacy (token acc.); (2) the highest Average; (3) the lowest edit time per edit; "
        "(4) the smallest relative perplexity increase — each within one setting (model, "
        "benchmark, mode, batch size, label) holding two or more editors; (5) same-subject "
        f"survival: efficacy drop below {percent(thresholds.same_subject_drop)} points from "
        "distinct- to same-subject batches; (6) the largest batch size and (7) the last "
        f"sequential step keeping efficacy ≥ {percent(thresholds.efficacy_kept)}%. Final "
        "scores of sequential runs are those after their last step.")
    sections = [Section("Which method?", (intro,))]
    settings = _settings(candidates)
    ranked = {key: members for key, members in settings.items()
              if len({row.editor for row in members}) >= 2}
    for key, members in ranked.items():
        sections.append(Section(f"Setting: {_setting_name(key, finals)}", (Bullets((
            _keeps_locality(members, thresholds),
            _best_average(members),
            _fastest(members),
            _perplexity(members),
        )),), level=3))
    if not ranked:
        sections.append(Section("Ranking", (Paragraph(
            "No setting in this report holds two or more editors, so the data rank no editor "
            "against another; the figures above describe each run on its own."),), level=3))
    across = [bullet for bullet in (
        _same_subject(candidates, thresholds),
        _batch_growth(candidates, thresholds),
        _sequential(candidates, rows, thresholds),
    ) if bullet is not None]
    if across:
        sections.append(Section("Across settings", (Bullets(tuple(across)),), level=3))
    sections.append(Section("Caveats", (Bullets(_caveats(finals, thresholds)),), level=3))
    return tuple(sections)


def _settings(rows: Sequence[ResultRow]) -> dict[tuple, list[ResultRow]]:
    grouped: dict[tuple, list[ResultRow]] = defaultdict(list)
    for row in rows:
        key = (row.run.model.fingerprint, row.benchmark, row.mode, row.batch_size, row.label)
        grouped[key].append(row)
    return grouped


def _setting_name(key: tuple, finals: Sequence[ResultRow]) -> str:
    fingerprint, benchmark, mode, batch_size, label = key
    parts = [benchmark, "one edit at a time" if mode == "single" else f"{mode} of {batch_size}"]
    if label:
        parts.append(label)
    if len({row.run.model.fingerprint for row in finals}) > 1:
        model = next(r.run.model for r in finals if r.run.model.fingerprint == fingerprint)
        parts.append(f"model {model.model_type} {fingerprint[:12]}")
    return ", ".join(parts)


def _ranked(rows: Sequence[ResultRow], value: Callable[[ResultRow], float | None],
            highest: bool) -> list[tuple[ResultRow, float]]:
    """Rows with a value, best first (ties keep the report's order)."""
    valued = [(row, value(row)) for row in rows if value(row) is not None]
    return sorted(valued, key=lambda pair: -pair[1] if highest else pair[1])


def _margin_note(ranked: list[tuple[ResultRow, float]]) -> str:
    """Say so when the winner leads by less than one edit's share of a score."""
    if len(ranked) < 2:
        return ""
    (best, best_value), (second, second_value) = ranked[0], ranked[1]
    one_edit = 1 / min(best.requests, second.requests)
    if abs(best_value - second_value) < one_edit:
        return (f" Its lead over {second.name} ({percent(second_value)}%) is smaller than one "
                f"edit's share ({percent(one_edit)} points), so the data do not separate them.")
    return f" Runner-up: {second.name} ({percent(second_value)}%)."


def _keeps_locality(rows: Sequence[ResultRow], thresholds: Thresholds) -> Bullet:
    lead = "Keeps locality"
    measured = [row for row in rows if row.aggregate.locality_mean is not None]
    if not measured:
        return Bullet(lead, "Cannot say: no run in this setting measured locality.")
    safe = [row for row in measured if row.aggregate.locality_mean >= thresholds.locality]
    if not safe:
        closest = _ranked(measured, lambda row: row.aggregate.locality_mean, highest=True)[0][0]
        return Bullet(lead, f"No editor keeps mean locality ≥ {percent(thresholds.locality)}%; "
                            f"the highest is {closest.name} at "
                            f"{percent(closest.aggregate.locality_mean)}%.")
    ranked = _ranked(safe, lambda row: row.aggregate.efficacy_accuracy, highest=True)
    best = ranked[0][0]
    return Bullet(lead, (
        f"{best.name}: the highest efficacy (token acc.) {percent(best.aggregate.efficacy_accuracy)}% "
        f"among the {len(safe)} of {len(measured)} runs keeping mean locality ≥ "
        f"{percent(thresholds.locality)}% (its locality: {percent(best.aggregate.locality_mean)}%)."
        + _margin_note(ranked)))


def _best_average(rows: Sequence[ResultRow]) -> Bullet:
    lead = "Best Average"
    ranked = _ranked(rows, lambda row: row.aggregate.average, highest=True)
    if not ranked:
        return Bullet(lead, "Cannot say: the Average needs generality and locality, which no "
                            "run in this setting measured.")
    best, value = ranked[0]
    return Bullet(lead, f"{best.name}: {percent(value)}%." + _margin_note(ranked))


def _edit_seconds_per_edit(row: ResultRow) -> float:
    return row.run.timings.edit_cost_seconds / max(1, len(row.run.record_indices))


def _fastest(rows: Sequence[ResultRow]) -> Bullet:
    ranked = _ranked(rows, _edit_seconds_per_edit, highest=False)
    best, value = ranked[0]
    text = f"{best.name}: {_duration(value)} per edit"
    if len(ranked) > 1:
        text += _runner_up(ranked[1][0], _duration(value), _duration(ranked[1][1]))
    return Bullet("Fastest to edit", text + " (one timing on this machine).")


def _relative_perplexity_change(row: ResultRow) -> float | None:
    before, after = row.perplexity_before, row.aggregate.health.perplexity_after
    if before is None or after is None or before <= 0:
        return None
    return (after - before) / before


def _perplexity(rows: Sequence[ResultRow]) -> Bullet:
    lead = "Hurts perplexity least"
    ranked = _ranked(rows, _relative_perplexity_change, highest=False)
    if not ranked:
        return Bullet(lead, "Cannot say: no run in this setting measured perplexity before and "
                            "after editing.")
    best, change = ranked[0]
    text = (f"{best.name}: perplexity {best.perplexity_before:.2f} → "
            f"{best.aggregate.health.perplexity_after:.2f} ({_signed_percent(change)})")
    if len(ranked) > 1:
        text += _runner_up(ranked[1][0], _signed_percent(change), _signed_percent(ranked[1][1]))
    return Bullet(lead, text + ".")


def _runner_up(second: ResultRow, best_shown: str, second_shown: str) -> str:
    """Name the runner-up, and call it a tie when both values print the same."""
    if best_shown == second_shown:
        return f"; {second.name} ties at {second_shown}, so the data do not separate them"
    return f"; next is {second.name} with {second_shown}"


def _same_subject(rows: Sequence[ResultRow], thresholds: Thresholds) -> Bullet | None:
    labelled = [row for row in rows if row.label in (SAME_SUBJECT, DISTINCT_SUBJECT)]
    if not labelled:
        return None
    lead = "Survives same-subject batches"
    by_key = {(row.editor, row.benchmark, row.mode, row.batch_size, row.label): row
              for row in labelled}
    verdicts = []
    for (editor, benchmark, mode, batch_size, label), same in by_key.items():
        distinct = by_key.get((editor, benchmark, mode, batch_size, DISTINCT_SUBJECT))
        if label != SAME_SUBJECT or distinct is None:
            continue
        drop = distinct.aggregate.efficacy_accuracy - same.aggregate.efficacy_accuracy
        verdict = "survives" if drop < thresholds.same_subject_drop else "does not survive"
        verdicts.append(
            f"{editor} ({mode} of {batch_size}) {verdict}: efficacy (token acc.) "
            f"{percent(distinct.aggregate.efficacy_accuracy)}% distinct → "
            f"{percent(same.aggregate.efficacy_accuracy)}% same-subject (drop {percent(drop)} points)")
    if not verdicts:
        return Bullet(lead, "Cannot say: no editor has both a same-subject and a "
                            "distinct-subject run with the same batch size.")
    return Bullet(lead, "; ".join(verdicts) + ".")


def _batch_growth(rows: Sequence[ResultRow], thresholds: Thresholds) -> Bullet | None:
    grouped: dict[tuple, list[ResultRow]] = defaultdict(list)
    for row in rows:
        if row.mode != "sequential":
            grouped[(row.editor, row.label, row.benchmark)].append(row)
    findings = []
    for (editor, label, benchmark), members in grouped.items():
        sizes = sorted({row.batch_size for row in members})
        if len(sizes) < 2:
            continue
        efficacy = {row.batch_size: row.aggregate.efficacy_accuracy for row in members}
        name = ", ".join(p for p in (editor, label) if p)
        kept = [size for size in sizes if efficacy[size] >= thresholds.efficacy_kept]
        largest = sizes[-1]
        if not kept:
            findings.append(f"{name} stays below {percent(thresholds.efficacy_kept)}% at every "
                            f"batch size ({_size_list(sizes)})")
        elif kept[-1] == largest:
            findings.append(f"{name} keeps efficacy ≥ {percent(thresholds.efficacy_kept)}% up to "
                            f"the largest batch tried, {largest} ({percent(efficacy[largest])}%)")
        else:
            findings.append(f"{name} keeps efficacy ≥ {percent(thresholds.efficacy_kept)}% up to "
                            f"batch {kept[-1]}; at {largest} it is {percent(efficacy[largest])}%")
    if not findings:
        return None
    return Bullet("Holds up as batches grow", "; ".join(findings) + ".")


def _sequential(candidates: Sequence[ResultRow], rows: Sequence[ResultRow],
                thresholds: Thresholds) -> Bullet | None:
    wanted = {row.run_number for row in candidates if row.mode == "sequential"}
    steps: dict[int, list[ResultRow]] = defaultdict(list)
    for row in rows:
        if row.run_number in wanted:
            steps[row.run_number].append(row)
    findings = []
    for members in steps.values():
        last = members[-1]
        held = 0
        for row in members:
            if row.aggregate.efficacy_accuracy < thresholds.efficacy_kept:
                break
            held = row.step
        if held == 0:
            start = f"efficacy is below {percent(thresholds.efficacy_kept)}% from step 1"
        else:
            reached = next(row for row in members if row.step == held)
            start = (f"efficacy on everything edited so far stays ≥ "
                     f"{percent(thresholds.efficacy_kept)}% through step {held} "
                     f"({reached.requests} edits)")
        findings.append(f"{last.name}: {start}; after step {last.step} ({last.requests} edits) "
                        f"it is {percent(last.aggregate.efficacy_accuracy)}%")
    if not findings:
        return None
    return Bullet("Survives sequential editing", "; ".join(findings) + ".")


def _caveats(finals: Sequence[ResultRow], thresholds: Thresholds) -> tuple[Bullet, ...]:
    caveats = []
    # Caveats qualify recommendations, so the never-recommended reference needs none.
    edited = [row for row in finals if row.editor not in REFERENCE_EDITORS]
    for row in edited:
        limits = []
        if row.ceiling_efficacy < 1:
            limits.append(f"efficacy at {percent(row.ceiling_efficacy)}%")
        limits += [f"locality {group_label(group)} at {percent(value)}%"
                   for group, value in row.ceiling_locality.items() if value < 1]
        if limits:
            caveats.append(Bullet("Ceiling", (
                f"run {row.run_number} ({row.name}): its batches cap {', '.join(limits)}; "
                "read its scores against these caps, not against 100%.")))
    for row in edited:
        if row.requests < thresholds.few_requests:
            caveats.append(Bullet("Few edits", (
                f"run {row.run_number} ({row.name}) scored {row.requests} edits, so one edit "
                f"moves its scores by {percent(1 / row.requests)} points.")))
    seeds = sorted({row.run.seed for row in finals})
    if len(seeds) == 1:
        caveats.append(Bullet("One seed", (
            f"every run used seed {seeds[0]} once; the differences above carry no confidence "
            "interval.")))
    references = [str(row.run_number) for row in finals if row.editor in REFERENCE_EDITORS]
    if references:
        caveats.append(Bullet("Reference", (
            f"run {', '.join(references)} is the unedited model; it is shown for comparison "
            "and never recommended.")))
    if not caveats:
        caveats.append(Bullet("", "None found: no ceiling below 100%, every run scored at "
                                   f"least {thresholds.few_requests} edits, and runs used "
                                   "several seeds."))
    return tuple(caveats)


def _duration(seconds_per_edit: float) -> str:
    return f"{seconds_per_edit:.3g} s"


def _signed_percent(change: float) -> str:
    return f"{100 * change:+.1f}%"


def _size_list(sizes: Sequence[int]) -> str:
    return ", ".join(str(size) for size in sizes)
