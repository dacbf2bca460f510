"""Every available editor on the same MedCF++ test edits, batch mode, default model: one table.

    python -m experiments.scripts.medcfpp_table [--edits 10] [--seed 0] [--out DIR]

Editors come from the registries (see experiments.discovery); the unedited baseline always
runs first, and the editors that cannot be built yet are listed under the table.
"""

from __future__ import annotations

from pathlib import Path

import click

from experiments.console import console, fail, progress_bar
from experiments.discovery import discover_editors
from experiments.edit_sets import draw_edits
from experiments.harness import run_batch
from experiments.records import Settings, write_record
from experiments.tables import comparison_table
from lm.embedded import ModelNotAvailable
from lm.loading import load

# Small enough that every editor fits in a few minutes on a 2-core CPU.
SETTINGS = Settings(fluency_prompts=10, fluency_new_tokens=40, perplexity_tokens=512)


@click.command()
@click.option("--edits", "count", type=int, default=10, show_default=True,
              help="MedCF++ test records edited together.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the record draw.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for one JSON run record per editor.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def main(count: int, seed: int, out: Path | None, quiet: bool) -> None:
    screen = console()
    bars = console(quiet)
    try:
        model, tok = load("default")
        edits = draw_edits("medcfpp", count, seed)
        lineup = discover_editors(model, tok)
        records = []
        for editor in lineup.editors:
            with progress_bar(bars, editor.name, "batch") as update:
                records.append(run_batch(editor, model, tok, edits, settings=SETTINGS,
                                         progress=update))
    except (ValueError, ModelNotAvailable) as error:
        fail(str(error))
    if out is not None:
        for record in records:
            write_record(out / f"medcfpp-batch{count}-seed{seed}-{record.editor}.json", record)
    title = f"MedCF++ test, {count} edits in one batch, seed {seed}, default model"
    screen.print(comparison_table(records, title))
    screen.print(records[0].steps[0].validation.ceiling_sentence)
    screen.print(
        "Eff/Gen: teacher-forced target token accuracy; TD/EM/SS/TS: agreement with the "
        f"unedited model; Flu: n-gram entropy of {SETTINGS.fluency_new_tokens}-token greedy "
        f"continuations of {min(count, SETTINGS.fluency_prompts)} edit prompts (the papers use "
        "100 tokens); Avg: MedREK eq. 13."
    )
    if lineup.unavailable:
        screen.print("Not run (unavailable): " + "; ".join(
            f"{name} ({why})" for name, why in lineup.unavailable.items()) + ".")


if __name__ == "__main__":
    main()
