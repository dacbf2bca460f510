"""The report's plots, each drawn only when the report holds its data.

The trade-off plot (`tradeoff_plot`) opens the report, beside the results table: efficacy
against mean locality, one point per run with its 95% interval as whiskers on both axes, the
unedited model marked. The others follow the examples and diagnostics:

(a) degradation against batch size: an editor (with one label, on one benchmark) run at two
    or more batch sizes in single/batch mode;
(b) degradation over sequential steps: a sequential run with two or more steps;
(c) AKD against efficacy: `analyses["akd"]` holds at least one finite value;
(d) locality sub-metrics per run (grouped bars): some run measured locality;
(e) retrieval outcomes per run: some run recorded retrieval outcomes.

Where a figure has a bootstrap interval, it is drawn as an error bar. Figures are built with matplotlib's object API on the Agg canvas (no pyplot, so no global
figure state) under fixed rc settings, and saved without the "Software" PNG text chunk, so
the same report gives the same PNG bytes on the same matplotlib.
"""

from __future__ import annotations

import io
import math
from collections import defaultdict
from functools import partial
from types import MappingProxyType
from typing import Sequence

import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from experiments.records import Aggregate
from experiments.report.analyses import AkdPoint
from experiments.report.blocks import Plot
from experiments.report.formatting import group_label
from experiments.report.rows import ResultRow, locality_groups

STYLE = MappingProxyType({"font.size": 9, "axes.grid": True, "grid.alpha": 0.3, "figure.dpi": 100,
                          "savefig.dpi": 100, "axes.spines.top": False, "axes.spines.right": False})
PALETTE = matplotlib.colormaps["tab10"].colors
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
# (panel title, the aggregate field it plots); plotted as percentages.
CURVE_METRICS: tuple[tuple[str, str], ...] = (
    ("Eff acc", "efficacy_accuracy"),
    ("Gen acc", "generality_accuracy"),
    ("Loc mean", "locality_mean"),
)
REFERENCE_EDITOR = "unedited"
RETRIEVAL_OUTCOMES = ("correct", "wrong", "none", "unwanted")

Series = tuple[str, str, tuple[tuple[float, Aggregate], ...]]  # (name, editor, points)


def report_plots(rows: Sequence[ResultRow], finals: Sequence[ResultRow],
                 akd: Sequence[AkdPoint]) -> tuple[Plot, ...]:
    """The applicable plots, in the order (a)-(e). `finals` has one row per run."""
    colours = _editor_colours(finals)
    # (title, caption, series, x axis label, log-scaled x): the two degradation curves.
    curves = (
        ("Degradation against batch size",
         "Scores of each editor at each batch size (single/batch runs; log-scaled x axis).",
         _batch_size_series(finals), "batch size", True),
        ("Degradation over sequential edits",
         "Scores of everything edited so far after each sequential step.",
         _sequential_series(rows), "edits applied so far", False),
    )
    plots = [Plot(title, caption, partial(_draw_curves, series, colours, x_label, log_x=log_x))
             for title, caption, series, x_label, log_x in curves if series]
    akd_pairs = _akd_pairs(finals, akd)
    if akd_pairs:
        plots.append(Plot(
            "AKD against efficacy",
            "Average Key Distance of each scored batch at each layer against that batch's "
            "efficacy (token acc.).",
            partial(_draw_akd, akd_pairs, colours)))
    with_locality = [row for row in finals if row.aggregate.locality]
    if with_locality:
        groups = locality_groups([row.run for row in with_locality])
        plots.append(Plot(
            "Locality sub-metrics per run",
            "Agreement with the unedited model on unrelated prompts, per probe group.",
            partial(_draw_bars, [(row.name, [row.aggregate.locality.get(g) for g in groups],
                                  [row.intervals.get(f"locality.{g}") for g in groups])
                                 for row in with_locality],
                    [group_label(g) for g in groups], "locality (%)")))
    with_retrieval = [row for row in finals if row.retrieval is not None]
    if with_retrieval:
        plots.append(Plot(
            "Retrieval outcomes per run",
            "Shares of edit queries retrieving the right, a wrong or no edit, and of locality "
            "queries retrieving an edit (unwanted).",
            partial(_draw_bars, [(row.name, [getattr(row.retrieval, o) for o in RETRIEVAL_OUTCOMES],
                                  [None] * len(RETRIEVAL_OUTCOMES))
                                 for row in with_retrieval],
                    list(RETRIEVAL_OUTCOMES), "share of queries (%)")))
    return tuple(plots)


def tradeoff_plot(finals: Sequence[ResultRow]) -> Plot | None:
    """Efficacy (token acc.) against mean locality per run, with interval whiskers; None when
    no run measured locality."""
    points = [row for row in finals if row.aggregate.locality_mean is not None]
    if not points:
        return None
    return Plot(
        "Efficacy against locality",
        "One point per run (a sequential run: after its last step): efficacy (token acc.) "
        "against mean locality, whiskers the 95% bootstrap intervals; the unedited model is the "
        "black star. Up and to the right is better; a point level with the star does not edit.",
        partial(_draw_tradeoff, tuple(points), _editor_colours(finals)))


def _draw_tradeoff(points: Sequence[ResultRow], colours: dict) -> bytes:
    with matplotlib.rc_context(dict(STYLE)):
        figure = Figure(figsize=(6.5, 4.6), layout="constrained")
        ax = figure.subplots()
        for number, row in enumerate(points):
            result = row.aggregate
            x, y = 100 * result.locality_mean, 100 * result.efficacy_accuracy
            reference = row.editor == REFERENCE_EDITOR
            ax.errorbar(x, y, xerr=_whisker(result.locality_mean, row.intervals.get("locality_mean")),
                        yerr=_whisker(result.efficacy_accuracy, row.intervals.get("efficacy_accuracy")),
                        fmt="*" if reference else MARKERS[number % len(MARKERS)],
                        markersize=12 if reference else 6, capsize=3,
                        color="black" if reference else colours[row.editor], label=row.name)
        ax.set_xlabel("Loc mean (%)")
        ax.set_ylabel("Eff acc (%)")
        ax.set_xlim(-3, 103)
        ax.set_ylim(-3, 103)
        figure.legend(loc="outside lower center", ncols=min(3, len(points)), fontsize=7)
        return _png(figure)


def _whisker(value: float, interval: tuple[float, float] | None) -> list[list[float]] | None:
    """Matplotlib's asymmetric error (below, above) in percent, or None without an interval."""
    if interval is None:
        return None
    return [[100 * max(0.0, value - interval[0])], [100 * max(0.0, interval[1] - value)]]


def _editor_colours(finals: Sequence[ResultRow]) -> dict[str, tuple[float, float, float]]:
    editors = list(dict.fromkeys(row.editor for row in finals))
    return {editor: PALETTE[index % len(PALETTE)] for index, editor in enumerate(editors)}


def _batch_size_series(finals: Sequence[ResultRow]) -> tuple[Series, ...]:
    grouped: dict[tuple, list[ResultRow]] = defaultdict(list)
    for row in finals:
        if row.mode != "sequential":
            grouped[(row.editor, row.label, row.benchmark)].append(row)
    several_benchmarks = len({row.benchmark for row in finals}) > 1
    series = []
    for (editor, label, benchmark), members in grouped.items():
        if len({row.batch_size for row in members}) < 2:
            continue
        name = ", ".join(p for p in (editor, label, benchmark if several_benchmarks else None) if p)
        points = sorted(((row.batch_size, row.aggregate) for row in members), key=lambda p: p[0])
        series.append((name, editor, tuple(points)))
    return tuple(series)


def _sequential_series(rows: Sequence[ResultRow]) -> tuple[Series, ...]:
    steps: dict[int, list[ResultRow]] = defaultdict(list)
    for row in rows:
        if row.step is not None:
            steps[row.run_number].append(row)
    return tuple(
        (members[0].name, members[0].editor, tuple((row.requests, row.aggregate) for row in members))
        for members in steps.values() if len(members) >= 2
    )


def _akd_pairs(finals: Sequence[ResultRow],
               akd: Sequence[AkdPoint]) -> tuple[tuple[str, int, float, float], ...]:
    """(editor, layer, AKD, efficacy) for every finite AKD value; `finals` is in run order."""
    runs = [row.run for row in finals]
    pairs = []
    for point in akd:
        if point.akd is None or not math.isfinite(point.akd):
            continue
        run = runs[point.run_index]
        (step,) = [s for s in run.steps if s.step == point.step]
        pairs.append((run.editor, point.layer, point.akd, step.aggregate.efficacy_accuracy))
    return tuple(pairs)


def _draw_curves(series: Sequence[Series], colours: dict, x_label: str, log_x: bool) -> bytes:
    with matplotlib.rc_context(dict(STYLE)):
        figure = Figure(figsize=(10, 3.4), layout="constrained")
        axes = figure.subplots(1, len(CURVE_METRICS), sharey=True)
        for number, (name, editor, points) in enumerate(series):
            for ax, (title, field) in zip(axes, CURVE_METRICS):
                kept = [(x, getattr(result, field), result.intervals.get(field))
                        for x, result in points if getattr(result, field) is not None]
                if kept:
                    whiskers = [_whisker(y, interval) or [[0.0], [0.0]] for _, y, interval in kept]
                    ax.errorbar([x for x, _, _ in kept], [100 * y for _, y, _ in kept],
                                yerr=[[w[0][0] for w in whiskers], [w[1][0] for w in whiskers]],
                                label=name, color=colours[editor], capsize=2,
                                marker=MARKERS[number % len(MARKERS)])
        xs = sorted({x for _, _, points in series for x, _ in points})
        for ax, (title, _) in zip(axes, CURVE_METRICS):
            ax.set_title(title)
            ax.set_xlabel(x_label)
            ax.set_ylim(-3, 103)
            if log_x:
                # Batch sizes span decades; label the sizes that were run, not powers of ten.
                ax.set_xscale("log")
                ax.set_xticks(xs, [str(x) for x in xs])
                ax.minorticks_off()
        axes[0].set_ylabel("%")
        figure.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center",
                      ncols=min(4, len(series)))
        return _png(figure)


def _draw_akd(pairs: Sequence[tuple[str, int, float, float]], colours: dict) -> bytes:
    layers = sorted({layer for _, layer, _, _ in pairs})
    with matplotlib.rc_context(dict(STYLE)):
        figure = Figure(figsize=(6, 4), layout="constrained")
        ax = figure.subplots()
        for editor in dict.fromkeys(editor for editor, _, _, _ in pairs):
            for layer in layers:
                mine = [(x, y) for e, l, x, y in pairs if e == editor and l == layer]
                if mine:
                    ax.scatter([x for x, _ in mine], [100 * y for _, y in mine],
                               color=colours[editor],
                               marker=MARKERS[layers.index(layer) % len(MARKERS)],
                               label=f"{editor}, layer {layer}")
        ax.set_xlabel("AKD")
        ax.set_ylabel("Eff (token acc.) %")
        ax.set_ylim(-3, 103)
        ax.legend(fontsize=7)
        return _png(figure)


def _draw_bars(bars: Sequence[tuple[str, list[float | None], list[tuple[float, float] | None]]],
               categories: Sequence[str], y_label: str) -> bytes:
    width = 0.8 / len(bars)
    with matplotlib.rc_context(dict(STYLE)):
        figure = Figure(figsize=(max(6.0, 1.2 * len(categories) + 0.25 * len(bars)), 3.8),
                        layout="constrained")
        ax = figure.subplots()
        for number, (name, values, intervals) in enumerate(bars):
            # A missing value stays a gap (NaN draws no bar) rather than a misleading zero.
            heights = [math.nan if v is None else 100 * v for v in values]
            whiskers = [_whisker(v, i) if v is not None and i is not None else [[0.0], [0.0]]
                        for v, i in zip(values, intervals)]
            ax.bar([c + (number - (len(bars) - 1) / 2) * width for c in range(len(categories))],
                   heights, width, label=name, color=PALETTE[number % len(PALETTE)],
                   yerr=[[w[0][0] for w in whiskers], [w[1][0] for w in whiskers]], capsize=2)
        ax.set_xticks(range(len(categories)), categories)
        ax.set_ylabel(y_label)
        ax.set_ylim(0, 105)
        figure.legend(loc="outside lower center", ncols=min(3, len(bars)), fontsize=7)
        return _png(figure)


def _png(figure: Figure) -> bytes:
    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()
