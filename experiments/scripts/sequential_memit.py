"""MEMIT in the sequential setting: batches of CounterFact test edits applied one after another.

    python -m experiments.scripts.sequential_memit [--batches 5] [--batch-size 20] [--seed 0]

After each batch, everything edited so far is scored; the table shows efficacy and locality
per step, and how the first batch's efficacy holds up. Needs MEMIT from the editors registry.
"""

from __future__ import annotations

from pathlib import Path

import click
import torch

from experiments.console import console, fail, progress_bar
from experiments.discovery import EditorUnavailable, build_editor
from experiments.edit_sets import draw_edits
from experiments.harness import run_sequential
from experiments.records import Settings, write_record
from experiments.tables import sequential_table
from lm.embedded import ModelNotAvailable
from lm.loading import load

SETTINGS = Settings(fluency_prompts=10, fluency_new_tokens=40, perplexity_tokens=512)


@click.command()
@click.option("--batches", type=click.IntRange(min=1), default=5, show_default=True, help="Sequential steps.")
@click.option("--batch-size", type=click.IntRange(min=1), default=20, show_default=True, help="Edits per step.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the record draw.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where to write the JSON run record.")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="Torch intra-op threads (default: torch's choice; 1 is faster on a busy machine).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def main(batches: int, batch_size: int, seed: int, out: Path | None, threads: int | None,
         quiet: bool) -> None:
    if threads:
        torch.set_num_threads(threads)
    try:
        model, tok = load("default")
        editor = build_editor("memit", model)
        edits = draw_edits("counterfact", batches * batch_size, seed)
        with progress_bar(console(quiet), "memit, sequential", "batch") as update:
            record = run_sequential(editor, model, tok, edits, batch_size, settings=SETTINGS,
                                    progress=update)
    except (EditorUnavailable, ValueError, ModelNotAvailable) as error:
        fail(str(error))
    if out is not None:
        write_record(out, record)
    title = (f"MEMIT, sequential: {batches} batches of {batch_size} CounterFact test edits, "
             f"seed {seed}, default model (PPL before {record.perplexity_before:.2f})")
    screen = console()
    screen.print(sequential_table(record, title))
    screen.print(record.steps[-1].validation.ceiling_sentence)


if __name__ == "__main__":
    main()
