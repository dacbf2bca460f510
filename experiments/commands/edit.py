"""`editscope edit`: apply a user's edits to a model and save the edited model (or memory).

The folder is written by the edit handle's `save` (`Applied.save`) plus the manifest of
`experiments.saved_edits`, whose `open_saved_edits` reads it back."""

from __future__ import annotations

import shutil
from pathlib import Path

import click
from rich.markup import escape

from data.benchmarks import load_benchmark
from editors.hparams_files import split_setting
from experiments.collisions import key_collisions
from experiments.commands.common import (
    field_map_option, hparams_option, hparams_request, max_target_tokens_option, model_option, writable_folder,
)
from experiments.console import console, fail, quiet_libraries, stages
from experiments.context import check_context
from experiments.discovery import EDITOR_NAMES, build_lineup_editor, check_lineup_name, defaults_note
from experiments.edit_sets import cut_targets
from experiments.saved_edits import write_manifest
from lm.files import atomic_directory
from lm.loading import load, quiet_transformers

MAX_LISTED = 10
SPACE_MARGIN = 1.1  # the copy's size plus tokenizer files and headers


def _known_editor(_context, _parameter, value: str) -> str:
    """--editor, case-insensitive, checked while parsing: before the model is loaded."""
    name = value.strip().lower()
    if split_setting(name)[0] not in EDITOR_NAMES:
        fail(f"Unknown editor {value!r}; choose from {', '.join(EDITOR_NAMES)}.")
    check_lineup_name(name)  # a named setting must exist
    return name


def _new_folder(context, parameter, value: str) -> str:
    if Path(value).exists():
        fail(f"--save {value} already exists; choose a new folder.")
    return writable_folder(context, parameter, value)


@click.command("edit")
@click.option("--requests", "requests_file", required=True, type=click.Path(dir_okay=False),
              help="JSON/JSONL file of edits: canonical, any shipped benchmark format (e.g. CounterFact's "
                   "fields), or any layout read through --fields.")
@field_map_option
@max_target_tokens_option
@click.option("--editor", "editor_name", required=True, callback=_known_editor,
              help="memit, pmet, memit_merge, alphaedit, ft_l, recipe, medrek.")
@click.option("--save", "save_dir", required=True, type=click.Path(file_okay=False), callback=_new_folder,
              help="New folder for the edited model (weight editors) or the edit memory (retrieval editors).")
@click.option("--key-threshold", type=float, default=0.05, show_default=True,
              help="Keys closer than this × the mean key norm at the last edit layer count as colliding.")
@click.option("--force", is_flag=True, help="Apply even when requests collide.")
@hparams_option
@model_option
@click.option("--quiet", is_flag=True)
def edit_command(requests_file, fields, max_target_tokens, editor_name, save_dir, key_threshold, force,
                 hparams_files, model_name, quiet):
    """Diagnose key collisions, then apply the edits and save the result to --save."""
    out = console(quiet)
    target = Path(save_dir)
    requests = load_benchmark(requests_file, fields=fields)
    # The benchmark tables of the requests' format apply (e.g. the medical ones to MedCF records).
    hparams = hparams_request(hparams_files, requests[0].metadata.get("benchmark"), [editor_name])
    with stages(out, 4) as begin, quiet_libraries(), quiet_transformers():
        begin("loading the model")
        model, tok = load(model_name)
        requests, _ = cut_targets(requests, tok, max_target_tokens)
        check_context(requests, tok, model)
        _check_space_for_copy(model, target)
        editor = build_lineup_editor(editor_name, model, hparams=hparams)
        note = defaults_note([editor_name], model, hparams=hparams)
        if note:
            out.print(f"[yellow]Note:[/yellow] {escape(note)}")
        begin("checking for colliding edits")
        collisions = key_collisions(editor, model, tok, requests, key_threshold)
        if collisions and not force:
            listed = "; ".join(c.sentence() for c in collisions[:MAX_LISTED])
            more = f" and {len(collisions) - MAX_LISTED} more" if len(collisions) > MAX_LISTED else ""
            fail(f"{len(collisions)} colliding pair(s): {listed}{more}. Key-value editors map one key to one "
                 "value, so use --editor memit_merge or a retrieval editor (recipe, medrek), or pass --force.")
        begin(f"applying {len(requests)} edit(s) with {editor.name}")
        applied = editor.apply(model, tok, requests)
        begin(f"saving to {target}")
        with atomic_directory(target) as tmp:
            applied.save(tmp)
            write_manifest(tmp, editor.name, model_name, requests)  # what `ask --edits` reads back
    out.print(f"Applied {len(requests)} edit(s) with {editor.name}; saved to {target}.")


def _check_space_for_copy(model, target: Path) -> None:
    """Refuse, before the edit, a --save disk that cannot hold a copy of the model (an edit
    memory is far smaller, so this bounds both)."""
    needed = sum(t.numel() * t.element_size() for t in model.state_dict().values()) * SPACE_MARGIN
    existing = target.absolute()
    while not existing.exists():
        existing = existing.parent
    free = shutil.disk_usage(existing).free
    if free < needed:
        fail(f"--save {target}: the edited model needs about {needed / 2**30:.1f} GiB, but only "
             f"{free / 2**30:.1f} GiB are free there.")
