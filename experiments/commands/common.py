"""Pieces every CLI command shares: common options, error mapping, report writing."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any, Iterator, Sequence

import click
from rich.console import Console

from experiments.console import fail
from experiments.records import RunRecord
from experiments.report import Report, render_all, write_report

DEFAULT_REPORTS_DIR = "reports"


def requested_editors(text: str) -> tuple[str, ...] | None:
    """--editors: None for "all"; otherwise the validated names in the order given (exits 2
    naming an unknown one). A weight editor may carry a shipped setting: memit_merge@memit_budget."""
    # Imported here: the editor registries are heavy, and `covariance` (a cache hit in seconds)
    # imports this module without needing them.
    from experiments.discovery import check_lineup_name

    if text.strip().lower() == "all":
        return None
    names = tuple(dict.fromkeys(part.strip().lower() for part in text.split(",") if part.strip()))
    if not names:
        fail(f"Unknown editor {text!r}; choose from all or a comma-separated list of editors.")
    with usage_errors():
        for name in names:
            check_lineup_name(name)
    return names


def _read_hparams_files(_context, _parameter, values: tuple[str, ...]) -> tuple:
    """Read and check every --hparams file while parsing (exit 2 with one sentence)."""
    from editors.hparams_files import locate_hparams_file, read_hparams_file

    try:
        return tuple(read_hparams_file(locate_hparams_file(value)) for value in values)
    except ValueError as error:
        raise click.BadParameter(str(error)) from None


def hparams_option(function):
    return click.option(
        "--hparams", "hparams_files", multiple=True, callback=_read_hparams_files, metavar="FILE",
        help="Hyper-parameter file (e.g. written by `tune`) or shipped setting name "
             "(memit_merge@memit_budget) for the editor it names; repeat for several editors.")(function)


def hparams_request(files: Sequence, benchmark: str | None, names: Sequence[str] | None):
    """The weight editors' hyper-parameter choice of a run: `benchmark`'s tables and the
    --hparams files, each of which must be for an editor the run includes (exits 2 if not)."""
    from editors.hparams_files import HparamsRequest
    from experiments.discovery import EDITOR_NAMES

    with usage_errors():
        request = HparamsRequest(benchmark, tuple(files))
        request.check_editors(EDITOR_NAMES if names is None else names)
    return request


def _checked_workers(_context, _parameter, value: str) -> str:
    """Refuse a bad --workers while parsing, before any model is loaded."""
    from experiments.workers import worker_count

    try:
        worker_count(value, 1)
    except ValueError as error:
        raise click.BadParameter(str(error)) from None
    return value


def workers_option(function):
    return click.option(
        "--workers", default="auto", show_default=True, callback=_checked_workers,
        help="Local worker processes running editors side by side ('auto': one per CPU core up to 4 "
             "and 6 GB of RAM each, 1 on a GPU). Each takes its share of the cores as torch threads.")(function)


def model_option(function):
    return click.option("--model", "model_name", default="default", show_default=True,
                        help="'default' (embedded SmolLM2-135M), an HF model id, or a local folder.")(function)


def seed_option(function):
    return click.option("--seed", type=int, default=0, show_default=True,
                        help="Seed of the edit draw (and of everything seeded downstream).")(function)


def _parsed_field_map(_context, _parameter, value: str | None):
    """--fields parsed while parsing the command line, so a bad map exits 2 before any work."""
    from data.field_maps import FieldMapError, parse_field_map

    if value is None:
        return None
    try:
        return parse_field_map(value)
    except FieldMapError as error:
        raise click.BadParameter(str(error)) from None


def field_map_option(function):
    """--fields: read a benchmark file of another layout (a `data.field_maps.FieldMap` or None)."""
    return click.option(
        "--fields", default=None, callback=_parsed_field_map, metavar="MAP",
        help="Read a benchmark file of another layout: canonical=record_field pairs, e.g. "
             "'target_new=answer,prompt=question,locality.topic=topic_prompt:topic_answer', "
             "or a .toml mapping file (README: 'Edit sets').")(function)


def max_target_tokens_option(function):
    """--max-target-tokens: the cut applied to long targets (see experiments.edit_sets)."""
    from experiments.edit_sets import MAX_TARGET_TOKENS

    return click.option(
        "--max-target-tokens", type=click.IntRange(min=1), default=MAX_TARGET_TOKENS, show_default=True,
        help="Targets and locality answers longer than this many tokens are cut to it before "
             "editing and scoring; the report counts the cuts.")(function)


def output_options(function):
    function = click.option("--reports-dir", type=click.Path(file_okay=False), default=DEFAULT_REPORTS_DIR,
                            show_default=True, help="Where the run's report folder is written.")(function)
    function = click.option("--json", "as_json", is_flag=True,
                            help="Print the report's JSON on stdout (the report is still written).")(function)
    return click.option("--quiet", is_flag=True, help="No progress bars or tables.")(function)


@contextlib.contextmanager
def usage_errors() -> Iterator[None]:
    """Turn the one-sentence errors of the library (ValueError / LookupError) into exit 2."""
    try:
        yield
    except (ValueError, LookupError) as error:
        fail(str(error).strip() or type(error).__name__)


def parse_csv_ints(text: str, option: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        fail(f"{option} must be comma-separated integers, not {text!r}.")
    if not values or min(values) <= 0:
        fail(f"{option} needs positive integers, not {text!r}.")
    return values


def publish(command: str, arguments: dict[str, Any], runs: Sequence[RunRecord], out: Console,
            reports_dir: str, as_json: bool, analyses: dict[str, Any] | None = None) -> Path:
    """Write report.json, render the Markdown/CSV/HTML beside it, and say where."""
    report = Report(command=command, arguments=arguments, runs=tuple(runs), analyses=analyses or {})
    run_dir = write_report(report, Path(reports_dir))
    render_all(run_dir)
    if as_json:
        click.echo(json.dumps(json.loads(report.to_json()), indent=2, sort_keys=True))
    out.print(f"Report: {run_dir}/report.md (also report.html, results.csv, report.json)")
    return run_dir
