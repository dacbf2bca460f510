"""Pieces every CLI command shares: common options, error mapping, report writing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import click
from rich.console import Console

from experiments.console import fail
from experiments.records import RunRecord
from experiments.report import Report, publish_report
from lm.files import cache_root, unwritable_reason

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
    for name in names:
        check_lineup_name(name)  # a UsageError: exit 2 with its sentence
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


def writable_cache(_context, _parameter, value: str) -> str:
    """Every command that loads a model also writes the cache (statistics, baselines, the
    default model): refuse an unwritable cache root while parsing, not after the work."""
    reason = unwritable_reason(cache_root())
    if reason is not None:
        fail(f"The cache folder {cache_root()} cannot be written ({reason}); point $EDITSCOPE_CACHE "
             "at a writable folder.")
    return value


def model_option(function):
    return click.option("--model", "model_name", default="default", show_default=True, callback=writable_cache,
                        help="'default' (embedded SmolLM2-135M), an HF model id, or a local folder.")(function)


def seed_option(function):
    return click.option("--seed", type=int, default=0, show_default=True,
                        help="Seed of the edit draw (and of everything seeded downstream).")(function)


def writable_folder(_context, parameter, value: str) -> str:
    """Refuse a folder that cannot be written while parsing, before any costly step, so a
    long run is never lost to it at the end (nothing is created by the check)."""
    reason = unwritable_reason(value)
    if reason is not None:
        fail(f"{parameter.opts[0]} {value}: {reason}.")
    return value


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
                            show_default=True, callback=writable_folder,
                            help="Where the run's report folder is written.")(function)
    function = click.option("--json", "as_json", is_flag=True,
                            help="Print the report's JSON on stdout (the report is still written).")(function)
    return click.option("--quiet", is_flag=True, help="No progress bars or tables.")(function)


def parse_layer_option(text: str) -> tuple[int, ...]:
    """--layers: an inclusive range "4-8", a list "2,4,6" or one index; exits 2 with a sentence
    that says what is wrong (a reversed range, a negative index, no layer at all)."""
    from editors.hparams import parse_layers  # the editors' parser; imported only when needed

    start, dash, stop = text.strip("[]() ").partition("-")
    if dash and start.strip().isdigit() and stop.strip().isdigit() and int(stop) < int(start):
        fail(f"--layers {text!r} is a reversed range; write {int(stop)}-{int(start)}.")
    try:
        layers = parse_layers(text)
    except ValueError:
        fail(f"--layers must look like 4-8 or 2,4,6, not {text!r}.")
    if not layers:
        fail(f"--layers {text!r} names no layer.")
    if min(layers) < 0:
        fail(f"--layers must name layers 0 or above, not {text!r}.")
    return layers


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
    """Publish the report folder (report.json, Markdown, CSV, HTML) and say where; --json
    prints the JSON first, so stdout holds it even if the folder cannot be written."""
    report = Report(command=command, arguments=arguments, runs=tuple(runs), analyses=analyses or {})
    if as_json:
        click.echo(json.dumps(json.loads(report.to_json()), indent=2, sort_keys=True))
    run_dir = publish_report(report, Path(reports_dir))
    out.print(f"Report: {run_dir}/report.md (also report.html, results.csv, report.json)")
    return run_dir
