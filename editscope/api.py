"""The few API functions that are more than a re-export: each joins the pieces a CLI command
joins, with the command-line parsing left out (see the package docstring)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from covariance.distributed import Rank
from data.benchmarks import load_benchmark
from data.field_maps import FieldMap, parse_field_map
from data.requests import EditRequest
from editors.protocol import Editor
from experiments.commands.sweep import line_up, run_jobs
from experiments.console import console
from experiments.edit_sets import MAX_TARGET_TOKENS, EditSet, cut_long_targets, edit_set_of
from experiments.harness import run_batch
from experiments.records import RunRecord, Settings
from experiments.report import Report, publish_report
from experiments.workers import Job


def load_edits(name_or_path: str, split: str | None = None, fields: str | FieldMap | None = None) -> list[EditRequest]:
    """Edit requests of a shipped benchmark (`"medcfpp"`, with `split`) or of a file in the
    canonical or a published format, or any layout through `fields` (a `--fields` string, a
    .toml path or a `FieldMap`)."""
    field_map = parse_field_map(fields) if isinstance(fields, str) else fields
    return load_benchmark(name_or_path, split, field_map)


def evaluate(editor: Editor, model: Any, tok: Any, edits: Sequence[EditRequest] | EditSet,
             batch_size: int | None = None, settings: Settings = Settings(),
             max_target_tokens: int = MAX_TARGET_TOKENS) -> RunRecord:
    """Apply the edits in batches of `batch_size` (default: all at once), score each batch,
    undo it: the harness run behind every CLI table, as one `RunRecord`."""
    return run_batch(editor, model, tok, _edit_set(edits, tok, max_target_tokens), batch_size, settings)


def compare(editors: Sequence[str] | None, model: Any, tok: Any, edits: Sequence[EditRequest] | EditSet,
            batch_size: int | None = None, settings: Settings = Settings(),
            max_target_tokens: int = MAX_TARGET_TOKENS) -> Report:
    """What `compare` runs: the unedited reference and each named editor (None: every editor
    this checkout can build) on the same edits, in this process; the runs in a `Report`."""
    edit_set = _edit_set(edits, tok, max_target_tokens)
    size = batch_size or len(edit_set.requests)
    quiet = console(quiet=True)
    lineup = line_up(None if editors is None else tuple(editors), model, quiet)
    jobs = [Job(name, edit_set, size) for name in lineup]
    records = run_jobs(jobs, lineup, model, tok, settings, Rank(), quiet)
    arguments = {"editors": "all" if editors is None else ",".join(editors), "benchmark": edit_set.dataset.benchmark,
                 "batch": size, "max_target_tokens": max_target_tokens, "api": True}
    return Report(command="compare", arguments=arguments, runs=tuple(records))


def write_report(report: Report, reports_dir: str | Path = "reports") -> Path:
    """Write report.json into a new run folder under `reports_dir` and render Markdown, CSV and
    HTML beside it, as the CLI does (the folder appears whole or not at all); returns it."""
    return publish_report(report, Path(reports_dir))


def _edit_set(edits: Sequence[EditRequest] | EditSet, tok: Any, max_target_tokens: int) -> EditSet:
    if not isinstance(edits, EditSet):
        label = str(edits[0].metadata.get("benchmark", "python")) if edits else "python"
        edits = edit_set_of(list(edits), label)
    return cut_long_targets(edits, tok, max_target_tokens)
