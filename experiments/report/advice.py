"""The "Which method?" section: recommendations computed from one report's numbers.

Every sentence below is the outcome of an explicit rule applied to the measured scores and
their 95% bootstrap intervals; when the data cannot decide a rule, the section says so instead
of guessing. Two figures are "separated" when their intervals do not overlap; a lead inside
the intervals is called a tie. The rules (thresholds from `Thresholds`):

Within each setting (same model, benchmark, mode, batch size, run label and seed):
0. Edits: a run edits only if its efficacy (token acc.) is above the unedited model's in the
   same setting beyond both intervals. Only runs that edit are recommended for anything; with
   no unedited run in the setting nothing can be shown to edit, and nothing is recommended.
1. Keeps locality: among runs that edit with mean locality >= `locality`, the highest efficacy.
2. Best Average: the highest MedREK eq. 13 Average among runs that edit, always shown beside
   the unedited model's Average, the bar to clear (eq. 13 rewards locality, which the
   unedited model has in full).
3. Fastest to edit: the lowest edit time per edit among runs that edit.
4. Changes perplexity least: among runs that edit and keep mean locality >= `locality`, the
   smallest relative perplexity change in size; changes whose interval holds 0 are no
   measurable change, and overlapping intervals are ties.
Across settings:
5. Survives same-subject batches: an editor whose efficacy on distinct-subject batches is at
   least `same_subject_floor`, and drops by less than `same_subject_drop` on same-subject
   batches; a drop that is negative beyond the intervals (same-subject batches edited better)
   is reported as an anomaly, not as survival.
6. Holds up as batches grow: per editor run at several batch sizes, the largest batch size
   at which efficacy is still >= `efficacy_kept`.
7. Survives sequential editing: per sequential run, the last step up to which efficacy on
   everything edited so far stays >= `efficacy_kept`.
Caveats: validator ceilings below 100% (once per setting), runs with fewer than
`few_requests` scored edits, and what the intervals do not cover.

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
    same_subject_floor: float = 0.5  # distinct-subject efficacy an editor needs to "survive"


def which_method(finals: Sequence[ResultRow], rows: Sequence[ResultRow],
                 thresholds: Thresholds = Thresholds()) -> tuple[Section, ...]:
    """The "Which method?" section and its subsections. `finals`: one row per run; `rows`:
    the full results table (sequential runs contribute one row per step)."""
    candidates = [row for row in finals if row.editor not in REFERENCE_EDITORS]
    intro = Paragraph(
        "Each recommendation below follows a fixed rule from this report's numbers and their "
        "95% intervals. Only runs whose efficacy (token acc.) is above the unedited model's "
        "beyond both intervals count as editing, and only those are recommended: (1) among them, "
        f"those keeping mean locality ≥ {percent(thresholds.locality)}%, the highest efficacy; "
        "(2) the highest Average, beside the unedited model's, the bar to clear; (3) the lowest "
        "edit time per edit; (4) among those keeping locality, the smallest perplexity change "
        "— each within one setting (model, benchmark, mode, batch size, label, seed). A lead "
        "inside the intervals is called a tie. (5) Same-subject survival: distinct-subject "
        f"efficacy ≥ {percent(thresholds.same_subject_floor)}% and a drop below "
        f"{percent(thresholds.same_subject_drop)} points to same-subject batches, not negative "
        f"beyond the intervals; (6) the largest batch size and (7) the last sequential step "
        f"keeping efficacy ≥ {percent(thresholds.efficacy_kept)}%. Final scores of sequential "
        "runs are those after their last step.")
    sections = [Section("Which method?", (intro,))]
    settings = _settings(finals)
    ranked = {key: members for key, members in settings.items()
              if len({row.editor for row in members if row.editor not in REFERENCE_EDITORS}) >= 2}
    several_seeds = len({row.run.seed for row in finals}) > 1
    for key, members in ranked.items():
        reference = next((row for row in members if row.editor in REFERENCE_EDITORS), None)
        edited = [row for row in members if row.editor not in REFERENCE_EDITORS]
        editing = [row for row in edited if reference is not None and _edits(row, reference)]
        sections.append(Section(f"Setting: {_setting_name(key, finals, several_seeds)}", (Bullets((
            _edits_bullet(edited, editing, reference),
            _keeps_locality(editing, thresholds),
            _best_average(editing, reference),
            _fastest(editing),
            _perplexity(editing, thresholds),
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
        grouped[row.setting].append(row)
    return grouped


def _setting_name(key: tuple, finals: Sequence[ResultRow], several_seeds: bool = False) -> str:
    fingerprint, benchmark, mode, batch_size, label, seed = key
    parts = [benchmark, "one edit at a time" if mode == "single" else f"{mode} of {batch_size}"]
    if label:
        parts.append(label)
    if several_seeds:
        parts.append(f"seed {seed}")
    if len({row.run.model.fingerprint for row in finals}) > 1:
        model = next(r.run.model for r in finals if r.run.model.fingerprint == fingerprint)
        parts.append(f"model {model.model_type} {fingerprint[:12]}")
    return ", ".join(parts)


def _interval(row: ResultRow, name: str, value: float) -> tuple[float, float]:
    """The figure's interval, or the bare value when the record has none."""
    return row.intervals.get(name, (value, value))


def _above(first: ResultRow, second: ResultRow, name: str,
           value: Callable[[ResultRow], float]) -> bool:
    """Whether `first`'s figure is above `second`'s beyond both intervals."""
    return _interval(first, name, value(first))[0] > _interval(second, name, value(second))[1]


def _efficacy(row: ResultRow) -> float:
    return row.aggregate.efficacy_accuracy


def _edits(row: ResultRow, reference: ResultRow) -> bool:
    """Above the unedited efficacy beyond both intervals; never for records without intervals
    (made before they were measured), whose differences cannot be told from noise."""
    if not _has_interval(row) or not _has_interval(reference):
        return False
    return _above(row, reference, "efficacy_accuracy", _efficacy)


def _has_interval(row: ResultRow) -> bool:
    return "efficacy_accuracy" in row.intervals


def _with_interval(row: ResultRow, name: str, value: float, scale: float = 100,
                   unit: str = "%") -> str:
    low, high = _interval(row, name, value)
    if low == high == value:
        return f"{scale * value:.1f}{unit}"
    return f"{scale * value:.1f}{unit} [95% interval {scale * low:.1f}–{scale * high:.1f}]"


def _edits_bullet(edited: Sequence[ResultRow], editing: Sequence[ResultRow],
                  reference: ResultRow | None) -> Bullet:
    lead = "Edits at all"
    if reference is None:
        return Bullet(lead, "Cannot say: this setting has no unedited run to compare efficacy "
                            "with, so no editor is shown to edit and none is recommended.")
    if not all(_has_interval(row) for row in (reference, *edited)):
        return Bullet(lead, "Cannot say: these records carry no confidence intervals (they were "
                            "made before intervals were measured), so no editor can be shown to "
                            "edit beyond noise and none is recommended; rerun the command.")
    bar = _with_interval(reference, "efficacy_accuracy", _efficacy(reference))
    idle = [row.name for row in edited if row not in editing]
    text = f"the unedited model's efficacy (token acc.) is {bar}; "
    text += (f"{len(editing)} of {len(edited)} runs are above it beyond the intervals"
             if editing else "no run is above it beyond the intervals, so none is recommended")
    if idle:
        text += f"; not distinguishable from not editing (or below it): {', '.join(idle)}"
    return Bullet(lead, text + ".")


def _ranked(rows: Sequence[ResultRow], value: Callable[[ResultRow], float | None],
            highest: bool) -> list[tuple[ResultRow, float]]:
    """Rows with a value, best first (ties keep the report's order)."""
    valued = [(row, value(row)) for row in rows if value(row) is not None]
    return sorted(valued, key=lambda pair: -pair[1] if highest else pair[1])


def _versus(ranked: list[tuple[ResultRow, float]], name: str) -> str:
    """How the winner stands against the runner-up: separated by the intervals, or a tie."""
    if len(ranked) < 2:
        return ""
    (best, best_value), (second, second_value) = ranked[0], ranked[1]
    low, high = _interval(best, name, best_value)
    other_low, other_high = _interval(second, name, second_value)
    second_text = _with_interval(second, name, second_value)
    if low > other_high or high < other_low:
        return f" It beats the runner-up, {second.name} ({second_text}), beyond both intervals."
    return (f" Runner-up {second.name} ({second_text}) is within the intervals: a tie the data "
            "do not separate.")


def _keeps_locality(rows: Sequence[ResultRow], thresholds: Thresholds) -> Bullet:
    lead = "Keeps locality"
    measured = [row for row in rows if row.aggregate.locality_mean is not None]
    if not rows:
        return Bullet(lead, "Cannot say: no run in this setting edits.")
    if not measured:
        return Bullet(lead, "Cannot say: no run in this setting measured locality.")
    safe = [row for row in measured if row.aggregate.locality_mean >= thresholds.locality]
    if not safe:
        closest = _ranked(measured, lambda row: row.aggregate.locality_mean, highest=True)[0][0]
        return Bullet(lead, f"No editor that edits keeps mean locality ≥ "
                            f"{percent(thresholds.locality)}%; the highest is {closest.name} at "
                            f"{percent(closest.aggregate.locality_mean)}%.")
    ranked = _ranked(safe, _efficacy, highest=True)
    best = ranked[0][0]
    return Bullet(lead, (
        f"{best.name}: the highest efficacy (token acc.) "
        f"{_with_interval(best, 'efficacy_accuracy', _efficacy(best))} among the {len(safe)} of "
        f"{len(measured)} editing runs keeping mean locality ≥ {percent(thresholds.locality)}% "
        f"(its locality: {percent(best.aggregate.locality_mean)}%)." + _versus(ranked, "efficacy_accuracy")))


def _average(row: ResultRow) -> float | None:
    return row.aggregate.average


def _best_average(rows: Sequence[ResultRow], reference: ResultRow | None) -> Bullet:
    lead = "Best Average"
    bar = (f" The unedited model's Average, the bar to clear, is "
           f"{_with_interval(reference, 'average', reference.aggregate.average)}."
           if reference is not None and reference.aggregate.average is not None else "")
    ranked = _ranked(rows, _average, highest=True)
    if not ranked:
        return Bullet(lead, ("Cannot say: no run in this setting edits." if not rows else
                             "Cannot say: the Average needs generality and locality, which no "
                             "run in this setting measured.") + bar)
    best, value = ranked[0]
    text = f"{best.name}: {_with_interval(best, 'average', value)}." + _versus(ranked, "average")
    if reference is not None and reference.aggregate.average is not None:
        if _above(best, reference, "average", lambda row: row.aggregate.average):
            text += bar + " It clears the bar beyond both intervals."
        else:
            text += bar + " No editor clears it beyond the intervals."
    return Bullet(lead, text)


def _edit_seconds_per_edit(row: ResultRow) -> float:
    return row.run.timings.edit_cost_seconds / max(1, len(row.run.record_indices))


def _fastest(rows: Sequence[ResultRow]) -> Bullet:
    if not rows:
        return Bullet("Fastest to edit", "Cannot say: no run in this setting edits.")
    ranked = _ranked(rows, _edit_seconds_per_edit, highest=False)
    best, value = ranked[0]
    text = f"{best.name}: {_duration(value)} per edit"
    if len(ranked) > 1:
        text += _runner_up(ranked[1][0], _duration(value), _duration(ranked[1][1]))
    return Bullet("Fastest to edit", text + " (one timing on this machine; only runs that edit).")


def _perplexity(rows: Sequence[ResultRow], thresholds: Thresholds) -> Bullet:
    lead = "Changes perplexity least"
    local = [row for row in rows if row.aggregate.locality_mean is not None
             and row.aggregate.locality_mean >= thresholds.locality]
    ranked = _ranked(local, lambda row: None if row.perplexity_change is None
                     else abs(row.perplexity_change), highest=False)
    if not ranked:
        return Bullet(lead, "Cannot say: no run in this setting edits, keeps mean locality ≥ "
                            f"{percent(thresholds.locality)}% and measured perplexity before "
                            "and after editing.")
    best = ranked[0][0]
    text = f"{best.name}: {_perplexity_text(best)}"
    if len(ranked) > 1:
        second = ranked[1][0]
        low, high = _interval(best, "perplexity_change", best.perplexity_change)
        other_low, other_high = _interval(second, "perplexity_change", second.perplexity_change)
        tie = not (high < other_low or low > other_high)
        text += (f"; a tie within the intervals with {second.name}: {_perplexity_text(second)}"
                 if tie else f"; next is {second.name}: {_perplexity_text(second)}")
    return Bullet(lead, text + f" (among runs that edit and keep mean locality ≥ "
                               f"{percent(thresholds.locality)}%).")


def _perplexity_text(row: ResultRow) -> str:
    change = row.perplexity_change
    low, high = _interval(row, "perplexity_change", change)
    text = (f"perplexity {row.perplexity_before:.2f} → {row.aggregate.health.perplexity_after:.2f} "
            f"({_signed_percent(change)}")
    if low != high:
        text += f", 95% interval {_signed_percent(low)} to {_signed_percent(high)}"
        if low <= 0 <= high:
            text += ": no measurable change"
    return text + ")"


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
    by_key = {(row.editor, row.benchmark, row.mode, row.batch_size, row.run.seed, row.label): row
              for row in labelled}
    verdicts = []
    for (editor, benchmark, mode, batch_size, seed, label), same in by_key.items():
        distinct = by_key.get((editor, benchmark, mode, batch_size, seed, DISTINCT_SUBJECT))
        if label != SAME_SUBJECT or distinct is None:
            continue
        drop = _efficacy(distinct) - _efficacy(same)
        if _efficacy(distinct) < thresholds.same_subject_floor:
            verdict = (f"cannot be judged (distinct-subject efficacy below the "
                       f"{percent(thresholds.same_subject_floor)}% floor: nothing to lose)")
        elif _above(same, distinct, "efficacy_accuracy", _efficacy):
            verdict = "shows an anomaly (same-subject batches edit better beyond the intervals)"
        elif drop < thresholds.same_subject_drop:
            verdict = "survives"
        else:
            verdict = "does not survive"
        verdicts.append(
            f"{editor} ({mode} of {batch_size}) {verdict}: efficacy (token acc.) "
            f"{_with_interval(distinct, 'efficacy_accuracy', _efficacy(distinct))} distinct → "
            f"{_with_interval(same, 'efficacy_accuracy', _efficacy(same))} same-subject "
            f"(drop {percent(drop)} points)")
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
    several_seeds = len({row.run.seed for row in finals}) > 1
    by_setting: dict[tuple, dict[str, list[str]]] = {}
    for row in edited:
        limits = []
        if row.ceiling_efficacy < 1:
            limits.append(f"efficacy at {percent(row.ceiling_efficacy)}%")
        limits += [f"locality {group_label(group)} at {percent(value)}%"
                   for group, value in row.ceiling_locality.items() if value < 1]
        if limits:
            runs = by_setting.setdefault(row.setting, {})
            runs.setdefault(", ".join(limits), []).append(str(row.run_number))
    for setting, limits in by_setting.items():
        for caps, numbers in limits.items():
            caveats.append(Bullet("Ceiling", (
                f"{_setting_name(setting, finals, several_seeds)} (run{'s' if len(numbers) > 1 else ''} "
                f"{', '.join(numbers)}): the batches cap {caps}; read the scores against these "
                "caps, not against 100%.")))
    for row in edited:
        if row.requests < thresholds.few_requests:
            caveats.append(Bullet("Few edits", (
                f"run {row.run_number} ({row.name}) scored {row.requests} edits, so one edit "
                f"moves its scores by {percent(1 / row.requests)} points.")))
    seeds = sorted({row.run.seed for row in finals})
    if len(seeds) == 1:
        caveats.append(Bullet("One seed", (
            f"every run used seed {seeds[0]}: the intervals cover another draw of edits of the "
            "same size, not another seed of the editors' own randomness; run with --seeds 0,1,2 "
            "for the spread across seeds.")))
    references = [str(row.run_number) for row in finals if row.editor in REFERENCE_EDITORS]
    if references:
        caveats.append(Bullet("Reference", (
            f"run {', '.join(references)} is the unedited model; it is the bar every editor "
            "must clear and is never recommended.")))
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
