"""`editscope convert IN OUT`: write any benchmark file (or shipped split) as a canonical edit set."""

from __future__ import annotations

from pathlib import Path

import click

from data.benchmarks import load_benchmark
from data.canonical import write_edit_set
from experiments.commands.common import field_map_option
from experiments.console import console, fail
from lm.files import unwritable_reason


@click.command("convert")
@click.argument("source")
@click.argument("target", type=click.Path(dir_okay=False))
@click.option("--split", default=None, help="Split of a shipped benchmark (default: its test split).")
@field_map_option
@click.option("--force", is_flag=True, help="Replace TARGET if it exists.")
@click.option("--quiet", is_flag=True)
def convert_command(source, target, split, fields, force, quiet):
    """Write SOURCE (a shipped benchmark name or a file in any known or --fields-mapped layout)
    to TARGET in the canonical format: a JSON list, or JSONL when TARGET ends in .jsonl
    (gzip-compressed when it ends in .gz). The schema is data/schema/edit-set.schema.json."""
    out = console(quiet)
    path = Path(target)
    if path.exists() and not force:
        fail(f"{target} already exists; choose a new file or pass --force.")
    reason = unwritable_reason(path.absolute().parent)
    if reason is not None:
        fail(f"Cannot write {target}: {reason}.")
    requests = load_benchmark(source, split, fields)
    write_edit_set(requests, path)
    out.print(f"Wrote {len(requests)} canonical record(s) to {target}.")
