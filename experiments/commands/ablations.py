"""`editscope ablations`: the published MedREK design against its ablations, each a network
trained on the same data with the same budget, all scored on one batch of test edits.

    python cli.py ablations --benchmark counterfact --batch 100 --train

Every network is trained by `train medrek` from the same start (medrek_copy's retriever; the
prompt-path ablations train the prompt path alone for `PROMPT_STEPS` steps, the retriever
ablations the retriever alone for `RETRIEVER_STEPS` steps on top of the shipped medrek's prompt
path). The training code never shows the prompt path what the retriever returns (edit losses use
each edit's own prompt), so the two kinds of ablation are independent. The networks are not
shipped (each is 13 MB and the shipped checkpoints must stay under 40 MB): `--train` makes the
missing ones in `$EDITSCOPE_CACHE/ablations` (~12 min per retriever, ~1 h per prompt path on
two AVX2 cores; resumable: a stopped run continues where it stopped); each folder keeps its
network's training log beside it, and the logs behind the figures in retrieval/README.md are
committed in retrieval/ablations/. A network is refused rather than scored under a name it does
not deserve when its log does not match its definition (another run, another step count;
`--train` continues it) or when the part it copied from a shipped checkpoint is no longer that
checkpoint's (the checkpoint was retrained since; `--train` starts its run over).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import click
import torch

from covariance.distributed import Rank
from experiments.commands.common import model_option, output_options, publish, seed_option
from experiments.commands.sweep import run_jobs
from experiments.commands.train import default_run_dir, train_command
from experiments.console import console, fail
from experiments.edit_sets import MAX_TARGET_TOKENS, cut_long_targets, draw_edits
from experiments.identity import IdentityEditor
from experiments.records import Settings
from experiments.tables import comparison_table
from experiments.workers import Job
from lm.files import cache_root
from lm.loading import load
from retrieval.checkpoint import NETWORK_FILE, SHIPPED_DIR, TRAINING_LOG_FILE, CheckpointError, load_network
from retrieval.editor import RetrievalEditor

REPO_ROOT = SHIPPED_DIR.parents[1]
PROMPT_STEPS = 600
RETRIEVER_STEPS = 4000
# The shipped medrek's training settings (retrieval/checkpoints/medrek/README.md), cut to the budget.
PROMPT_PATH = ("--steps", str(PROMPT_STEPS), "--only", "prompts", "--prompt-lr", "1e-4",
               "--init-from", str(SHIPPED_DIR / "medrek_copy"), "--init-part", "retriever",
               "--retrieval-batch", "128", "--validate-every", "100", "--validation-size", "50")
# medrek_copy's retriever stage, from a random retriever, under the shipped medrek's prompt path.
RETRIEVER = ("--steps", str(RETRIEVER_STEPS), "--only", "retriever", "--retrieval-batch", "256",
             "--validate-every", "1000", "--validation-size", "50", "--encoder-tokens", "8",
             "--init-from", str(SHIPPED_DIR / "medrek"), "--init-part", "prompts")


@dataclass(frozen=True)
class Ablation:
    name: str
    what: str
    train_options: tuple[str, ...]

    def option(self, flag: str) -> str:
        return self.train_options[self.train_options.index(flag) + 1]


ABLATIONS = (
    Ablation("full", "published design: attention over 8 z_v slots + 8 aligned encoder slots",
             PROMPT_PATH + ("--encoder-tokens", "8", "--align-encoder-slots", "4000")),
    Ablation("no-encoder-slots", "attention over the 8 z_v slots only", PROMPT_PATH + ("--encoder-tokens", "0")),
    Ablation("no-attention", "an MLP turns z_v into the 3 prompt tokens (RECIPE's prompt encoder)",
             PROMPT_PATH + ("--prompt-encoder", "mlp", "--encoder-tokens", "0")),
    Ablation("retriever-shared", "retriever with the shared query-key MLP, trained from scratch", RETRIEVER),
    Ablation("retriever-separate", "retriever with its own query MLP, trained from scratch",
             RETRIEVER + ("--separate-query-mlp",)),
)


def stale_reason(folder: Path, ablation: Ablation) -> str | None:
    """Why the network in `folder` is not the one `ablation` defines (None when it is): its
    training log must name the ablation's run and end at the step count the definition asks."""
    log_path = folder / TRAINING_LOG_FILE
    if not log_path.is_file():
        return f"has no {TRAINING_LOG_FILE}, so what trained it is unknown"
    last = json.loads(log_path.read_text())["stages"][-1]
    steps = int(ablation.option("--steps"))
    if last["run"] != f"ablation-{ablation.name}":
        return f"was trained by run {last['run']!r}, not ablation-{ablation.name}"
    if last["steps"] != steps:
        return f"was trained for {last['steps']} steps; the definition asks {steps}"
    return None


def changed_start(folder: Path, ablation: Ablation) -> str | None:
    """Why the part of the network in `folder` that the definition copies from a shipped checkpoint
    and never trains (`--init-part`) is not that checkpoint's part as it is now (None when it is,
    tensor for tensor). A shipped checkpoint retrained since would otherwise leave the cached
    network scored as the current definition while it holds the old one's weights."""
    source, part = Path(ablation.option("--init-from")), ablation.option("--init-part")
    mine = load_network(folder, expect_llm=None).network.part_parameters(part)
    kept = load_network(source, expect_llm=None).network.part_parameters(part)
    if mine.keys() == kept.keys() and all(torch.equal(mine[name], kept[name]) for name in kept):
        return None
    return (f"holds another {part} part than {_portable(str(source))} holds now (it was trained from an "
            "earlier version of that checkpoint)")


def _changed_start(networks_dir: Path, ablation: Ablation) -> str | None:
    try:
        return changed_start(networks_dir / ablation.name, ablation)
    except CheckpointError as error:
        fail(str(error))


def _portable(option: str) -> str:
    """A shipped checkpoint's path relative to the repository, so reports do not carry this
    machine's folders."""
    path = Path(option)
    return str(path.relative_to(REPO_ROOT)) if path.is_absolute() and path.is_relative_to(REPO_ROOT) else option


@click.command("ablations")
@click.option("--benchmark", default="medcfpp", show_default=True, help="medcfpp, counterfact, medversa, ...")
@click.option("--batch", "batch_size", type=click.IntRange(min=1), default=100, show_default=True,
              help="Edits applied together (the same draw as `compare --batch`).")
@click.option("--networks", "networks_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder of the ablation networks [default: $EDITSCOPE_CACHE/ablations].")
@click.option("--train", is_flag=True, help="Train the networks that are missing (resumable) before scoring.")
@click.option("--ablation", "chosen", type=click.Choice([a.name for a in ABLATIONS]), multiple=True,
              help="Only this network (repeatable) [default: all].")
@model_option
@seed_option
@output_options
def ablations_command(benchmark, batch_size, networks_dir, train, chosen, model_name, seed, quiet, as_json,
                      reports_dir):
    """MedREK against its trained ablations on one batch of test edits (one table, one report)."""
    out = console(quiet or as_json)
    networks_dir = networks_dir or cache_root() / "ablations"
    ablations = [a for a in ABLATIONS if not chosen or a.name in chosen]
    missing = [a for a in ablations if not (networks_dir / a.name / NETWORK_FILE).is_file()]
    if missing and not train:
        fail(f"No trained network for {', '.join(a.name for a in missing)} in {networks_dir}; add --train "
             "to train them (~12 min per retriever, ~1 h per prompt path on two CPU cores).")
    present = [a for a in ablations if a not in missing]
    stale = {a: reason for a in present if (reason := stale_reason(networks_dir / a.name, a))}
    restart = {a: reason for a in present if a not in stale and (reason := _changed_start(networks_dir, a))}
    if (stale or restart) and not train:
        fail("; ".join(f"{networks_dir / a.name} {reason}" for a, reason in {**restart, **stale}.items())
             + ". Add --train to train it to the current definition (a run continues where it stopped; "
               "one started from another checkpoint starts over).")
    trained = [*missing, *stale, *restart]
    for ablation in trained:
        run_dir = default_run_dir(f"ablation-{ablation.name}")
        if ablation in restart and run_dir.exists():
            out.print(f"Starting ablation {ablation.name} over: its run {run_dir} began from other weights.")
            shutil.rmtree(run_dir)
        out.print(f"Training ablation {ablation.name}: {ablation.what}")
        train_command.main(["medrek", "--name", run_dir.name, "--run-dir", str(run_dir), *ablation.train_options,
                            "--model", model_name, "--export", str(networks_dir / ablation.name)],
                           standalone_mode=False)
    # The trained ones are checked again: a run continued from another start is still refused.
    for ablation in trained:
        folder = networks_dir / ablation.name
        if reason := stale_reason(folder, ablation) or _changed_start(networks_dir, ablation):
            fail(f"{folder} {reason}. Run with --train again to train it from the current checkpoint.")
    edits = draw_edits(benchmark, batch_size, seed, asked_by=f"--batch {batch_size}")
    model, tok = load(model_name)
    edits = cut_long_targets(edits, tok, MAX_TARGET_TOKENS)
    lineup = {IdentityEditor.name: IdentityEditor()}
    for ablation in ablations:
        editor = RetrievalEditor.from_checkpoint(networks_dir / ablation.name)
        editor.name = f"ablation:{ablation.name}"
        editor.check_model(model)
        lineup[editor.name] = editor
    settings = Settings(fluency_prompts=0, perplexity_tokens=0)
    records = run_jobs([Job(name, edits, batch_size) for name in lineup], lineup, model, tok, settings, Rank(), out)
    out.print(comparison_table(records, f"MedREK ablations: {len(edits.requests)} edits from "
                                        f"{edits.dataset.benchmark} ({edits.dataset.split}), batch {batch_size}"))
    for ablation in ablations:
        out.print(f"  ablation:{ablation.name}: {ablation.what}")
    arguments = dict(benchmark=benchmark, batch=batch_size, model=model_name, seed=seed, networks=str(networks_dir),
                     ablations={a.name: [_portable(option) for option in a.train_options] for a in ablations})
    publish("ablations", arguments, records, out, reports_dir, as_json)
