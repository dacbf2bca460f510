"""`editscope edit`: apply a user's edits to a model and save the edited model (or memory)."""

from __future__ import annotations

from pathlib import Path

import click
from rich.markup import escape

from data.benchmarks import load_benchmark
from experiments.collisions import close_key_pairs, same_subject_pairs
from editors.hparams_files import split_setting
from experiments.commands.common import (
    field_map_option, hparams_option, hparams_request, max_target_tokens_option, model_option, usage_errors,
)
from experiments.console import console, fail
from experiments.discovery import EDITOR_NAMES, build_lineup_editor, check_lineup_name, defaults_note
from experiments.edit_sets import cut_targets
from experiments.saved_edits import write_manifest
from lm.files import atomic_directory
from lm.loading import load

MAX_LISTED = 10


@click.command("edit")
@click.option("--requests", "requests_file", required=True, type=click.Path(dir_okay=False),
              help="JSON/JSONL file of edits: canonical, any shipped benchmark format (e.g. CounterFact's "
                   "fields), or any layout read through --fields.")
@field_map_option
@max_target_tokens_option
@click.option("--editor", "editor_name", required=True, help="memit, pmet, memit_merge, alphaedit, ft_l, recipe, medrek.")
@click.option("--save", "save_dir", required=True, type=click.Path(file_okay=False),
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
    if target.exists():
        fail(f"--save {save_dir} already exists; choose a new folder.")
    name = editor_name.strip().lower()
    if split_setting(name)[0] not in EDITOR_NAMES:
        fail(f"Unknown editor {editor_name!r}; choose one of {', '.join(EDITOR_NAMES)}.")
    with usage_errors():
        check_lineup_name(name)
        requests = load_benchmark(requests_file, fields=fields)
        # The benchmark tables of the requests' format apply (e.g. the medical ones to MedCF records).
        hparams = hparams_request(hparams_files, requests[0].metadata.get("benchmark"), [name])
        model, tok = load(model_name)
        requests, _ = cut_targets(requests, tok, max_target_tokens)
        editor = build_lineup_editor(name, model, hparams=hparams)
        note = defaults_note([editor.name], model, hparams=hparams)
        if note:
            out.print(f"[yellow]Note:[/yellow] {escape(note)}")
        hparams = getattr(editor, "hparams", None)
        collisions = same_subject_pairs(requests)
        if hparams is not None and hasattr(hparams, "layers"):
            collisions += close_key_pairs(model, tok, requests, hparams.layers[-1], key_threshold,
                                          getattr(hparams, "key_token", "subject_last"))
    if collisions and not force and split_setting(editor.name)[0] not in ("memit_merge", "recipe", "medrek"):
        listed = "; ".join(c.sentence() for c in collisions[:MAX_LISTED])
        more = f" and {len(collisions) - MAX_LISTED} more" if len(collisions) > MAX_LISTED else ""
        fail(f"{len(collisions)} colliding pair(s): {listed}{more}. Key-value editors map one key to one value, "
             "so use --editor memit_merge or a retrieval editor (recipe, medrek), or pass --force.")
    with usage_errors():
        applied = editor.apply(model, tok, requests)
        with atomic_directory(target) as tmp:
            store = getattr(applied, "store", None)
            if store is not None:
                store.memory.save(tmp / "memory.safetensors")
            else:
                model.save_pretrained(tmp, safe_serialization=True)
                tok.save_pretrained(tmp)
            write_manifest(tmp, editor.name, model_name, requests)  # what `ask --edits` reads back
    out.print(f"Applied {len(requests)} edit(s) with {editor.name}; saved to {target}.")
