"""Every available editor on the same MedCF++ test edits, batch mode, default model: one table.

    python -m experiments.scripts.medcfpp_table [--edits 10] [--seed 0] [--editors all]
                                                [--out DIR] [--threads N]

Editors are those of experiments.discovery; the unedited baseline always
runs first, and the editors that cannot be built yet are listed under the table.
"""

from __future__ import annotations

from pathlib import Path

import click
import torch

from experiments.console import console, fail, progress_bar
from experiments.discovery import Lineup, discover_editors
from experiments.edit_sets import draw_edits
from experiments.errors import HarnessError
from experiments.harness import run_batch
from experiments.identity import IdentityEditor
from experiments.records import Settings, write_record
from experiments.tables import comparison_table
from lm.embedded import ModelNotAvailable
from lm.loading import load

# Small enough that every editor fits in a few minutes on a 2-core CPU.
SETTINGS = Settings(fluency_prompts=10, fluency_new_tokens=40, perplexity_tokens=512)


@click.command()
@click.option("--edits", "count", type=click.IntRange(min=1), default=10, show_default=True,
              help="MedCF++ test records edited together.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the record draw.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for one JSON run record per editor.")
@click.option("--editors", "chosen", default="all", show_default=True,
              help="'all', or a comma-separated subset such as memit,ft_l (unedited always runs).")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="Torch intra-op threads (default: torch's choice; 1 is faster on a busy machine).")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def main(count: int, seed: int, chosen: str, out: Path | None, threads: int | None,
         quiet: bool) -> None:
    if threads:
        torch.set_num_threads(threads)
    screen = console()
    bars = console(quiet)
    try:
        model, tok = load("default")
        edits = draw_edits("medcfpp", count, seed)
        lineup = _selected(discover_editors(model), chosen)
        records = []
        for editor in lineup.editors:
            with progress_bar(bars, editor.name, "batch") as update:
                records.append(run_batch(editor, model, tok, edits, settings=SETTINGS,
                                         progress=update))
            if out is not None:  # as soon as it exists, so an interrupted run keeps it
                write_record(out / f"medcfpp-batch{count}-seed{seed}-{editor.name}.json",
                             records[-1])
    except (ValueError, ModelNotAvailable) as error:
        fail(str(error))
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


def _selected(lineup: Lineup, chosen: str) -> Lineup:
    """The unedited baseline plus the chosen editors ("all": every one discovered)."""
    if chosen.strip().lower() == "all":
        return lineup
    names = [name.strip().lower() for name in chosen.split(",") if name.strip()]
    known = [editor.name for editor in lineup.editors] + list(lineup.unavailable)
    unknown = [name for name in names if name not in known]
    if unknown or not names:
        raise HarnessError(f"Unknown editor {', '.join(unknown) or repr(chosen)} in --editors; "
                           f"choose from all, {', '.join(known)}.")
    return Lineup(
        tuple(e for e in lineup.editors if e.name == IdentityEditor.name or e.name in names),
        {name: why for name, why in lineup.unavailable.items() if name in names},
    )


if __name__ == "__main__":
    main()
