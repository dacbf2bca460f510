"""`editscope train recipe|medrek|medrek_copy`: train (or resume) a retrieval editor's network and
export the checkpoint.

    python cli.py train medrek --steps 3000
    python cli.py train medrek --steps 3000 --export retrieval/checkpoints/medrek

Training data: CounterFact, MedCF++ and MedVersa *train* splits, 150 records of each held out
for validation (retrieval/training_data.py). Run the same command again (with the same or a
larger --steps) to continue from the last saved state in the run folder. Validation scores the
held-out edits through the comparison harness (`experiments.harness.run_batch`), so its numbers
are those `compare` would print. `--export` writes the best-on-validation network (bf16), the
loss curve and the validation history into a checkpoint folder.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Sequence

import click

from data.requests import EditRequest
from experiments.console import console, fail, progress_bar
from experiments.edit_sets import edit_set_of
from experiments.harness import run_batch
from experiments.records import Settings
from lm.files import cache_root
from lm.loading import load, model_fingerprint
from lm.precision import PRECISION_CHOICES, wants_bf16
from retrieval.alignment import align_encoder_slots
from retrieval.checkpoint import (NETWORK_FILE, TRAINING_LOG_FILE, CheckpointError, load_network, read_checked,
                                 save_network)
from retrieval.editor import RetrievalEditor
from retrieval.encoder import KnowledgeEncoder
from retrieval.features import FeatureTable
from retrieval.medrek import new_medrek, new_medrek_copy
from retrieval.memory import ModelIdentity
from retrieval.network import statement_text
from retrieval.recipe import new_recipe
from retrieval.training import BEST_FILE, STATE_FILE, STATE_FORMAT, Trainer, TrainingConfig, loss_curve
from retrieval.training_data import load_training_data

BUILDERS = {"recipe": new_recipe, "medrek": new_medrek, "medrek_copy": new_medrek_copy}
# Validation measures the edit scores only: fluency and perplexity would double its time.
VALIDATION_SETTINGS = Settings(fluency_prompts=0, perplexity_tokens=0)
# Held-out train statements the encoder-slot alignment is measured on (a few seconds to encode).
ALIGNMENT_CHECK = 500


def harness_evaluation(llm, tok):
    """The `Evaluate` of retrieval.training: one batch run of the comparison harness."""

    def evaluate(editor: RetrievalEditor, benchmark: str, requests: Sequence[EditRequest]) -> dict:
        edits = edit_set_of(requests, f"{benchmark} validation")
        result = run_batch(editor, llm, tok, edits, settings=VALIDATION_SETTINGS).aggregate
        retrieval = result.health.retrieval
        return {
            "edits": result.requests,
            "efficacy": result.efficacy_accuracy,
            "generality": result.generality_accuracy,
            "locality": dict(result.locality),
            "locality_mean": result.locality_mean,
            "retrieval": {"correct": retrieval.correct, "wrong": retrieval.wrong, "none": retrieval.none,
                          "unwanted": retrieval.unwanted},
        }

    return evaluate


@click.command("train")
@click.argument("editor", type=click.Choice(sorted(BUILDERS)))
@click.option("--steps", type=int, required=True, help="Total steps of the training (not of this run).")
@click.option("--run-dir", type=click.Path(path_type=Path), default=None,
              help="Folder of the resumable state [default: $EDITSCOPE_CACHE/retrieval-runs/<name>].")
@click.option("--name", default=None, help="Name of the run (and the network) [default: the editor].")
@click.option("--model", default="default", show_default=True)
@click.option("--lr", type=float, default=1e-3, show_default=True, help="Retriever learning rate.")
@click.option("--prompt-lr", type=float, default=1e-4, show_default=True, help="Prompt-path learning rate.")
@click.option("--edit-batch", type=int, default=8, show_default=True)
@click.option("--retrieval-batch", type=int, default=64, show_default=True)
@click.option("--edit-every", type=int, default=1, show_default=True,
              help="Edit losses (through the LLM) on every k-th step only.")
@click.option("--locality-weight", type=float, default=1.0, show_default=True)
@click.option("--llm-precision", type=click.Choice(PRECISION_CHOICES), default="auto", show_default=True,
              help="Autocast of the frozen LLM in the edit losses; auto: bf16 where the CPU multiplies it "
                   "natively (AMX, AVX512-BF16), else fp32. Part of a run's settings (resuming needs the same).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--validate-every", type=int, default=250, show_default=True)
@click.option("--validation-size", type=int, default=100, show_default=True,
              help="Held-out edits per benchmark scored at each validation.")
@click.option("--benchmark-weight", "benchmark_weights", multiple=True, metavar="NAME=WEIGHT",
              help="Relative chance of a benchmark supplying a step's batch (others: 1), e.g. medcfpp=2.")
@click.option("--width", type=int, default=None, help="Representation width r.")
@click.option("--prompt-length", type=int, default=None, help="Continuous prompt tokens T.")
@click.option("--prompt-encoder", type=click.Choice(["mlp", "attention"]), default=None)
@click.option("--encoder-tokens", type=int, default=None,
              help="Encoder slots: the knowledge encoder's states of the statement's last n tokens.")
@click.option("--align-encoder-slots", "align_statements", type=click.IntRange(min=0), default=0, show_default=True,
              help="Start the encoder slots' projection as the ridge map from encoder token states to "
                   "the LLM's embeddings of the aligned tokens, fitted on this many train statements.")
@click.option("--separate-query-mlp", is_flag=True, help="Ablation: no shared query-key MLP.")
@click.option("--init-from", type=click.Path(path_type=Path, exists=True), default=None,
              help="Start from this checkpoint's weights where names and shapes match.")
@click.option("--init-part", type=click.Choice(["all", "prompts", "retriever"]), default="all",
              show_default=True, help="Which part --init-from copies.")
@click.option("--only", type=click.Choice(["prompts", "retriever"]), default=None,
              help="Train only the prompt path or only the retriever.")
@click.option("--limit", type=int, default=None, help="Records per benchmark (smoke runs).")
@click.option("--export", "export_dir", type=click.Path(path_type=Path), default=None,
              help="After training, write the best network and its training log here.")
@click.option("--earlier-stage", "earlier", type=click.Path(path_type=Path, exists=True), multiple=True,
              help="Run folder of an earlier stage whose log --export includes.")
@click.option("--earlier-log", "earlier_logs", type=click.Path(path_type=Path, exists=True, dir_okay=False),
              multiple=True, help="training-log.json of an earlier export (e.g. the checkpoint this run "
                                  "started from) whose stages --export puts first; read before anything is written.")
def train_command(editor, steps, run_dir, name, model, lr, prompt_lr, edit_batch, retrieval_batch, edit_every,
         locality_weight, llm_precision, seed, benchmark_weights,
         validate_every, validation_size, width, prompt_length, prompt_encoder, encoder_tokens, align_statements,
         separate_query_mlp, init_from, init_part, only, limit, export_dir, earlier, earlier_logs):
    """Train (or resume) the network of RECIPE, MEDREK or MEDREK_COPY; `--export` ships it."""
    out = console()
    name = name or editor
    run_dir = run_dir or default_run_dir(name)
    try:
        llm, tok = load(model)
        encoder = KnowledgeEncoder.load("default", device=llm.device)
        overrides = {key: value for key, value in {
            "name": name, "width": width, "prompt_length": prompt_length, "prompt_encoder": prompt_encoder,
            "encoder_tokens": encoder_tokens,
        }.items() if value is not None}
        if separate_query_mlp:
            overrides["shared_query_key"] = False
        network = BUILDERS[editor](encoder, llm, **overrides)
        data = load_training_data(seed=seed, limit=limit)
        # Settings are checked before the slow set-up (alignment, features) so bad input fails at once.
        config = TrainingConfig(
            steps=steps, learning_rate=lr, prompt_learning_rate=prompt_lr, edit_batch_size=edit_batch,
            retrieval_batch_size=retrieval_batch, edit_every=edit_every,
            seed=seed, locality_weight=locality_weight, validate_every=validate_every,
            train_prompts=only != "retriever", train_retriever=only != "prompts",
            aligned_statements=align_statements, llm_bf16=wants_bf16(llm_precision, llm.device),
            benchmark_weights=_parse_weights(benchmark_weights),
        )
        config.check_benchmarks(data.train)
        fresh = not (run_dir / STATE_FILE).is_file()
        if align_statements and fresh:
            # Before the warm start, so a checkpoint's trained projection wins over the fitted one.
            fit, held_out = _alignment_statements(data, align_statements, seed)
            aligned = align_encoder_slots(network, encoder, llm, tok, fit, held_out)
            out.print(f"Encoder slots aligned on {len(fit)} train statements ({aligned.pairs} wordpieces): "
                      f"nearest LLM token right for {aligned.accuracy:.3f} of {aligned.held_out_pairs} wordpieces "
                      f"of {len(held_out)} other train statements, {aligned.accuracy_last:.3f} of their last "
                      f"{network.config.prompt_length}.")
        if init_from is not None and fresh:
            copied = _warm_start(network, init_from, init_part)
            out.print(f"Warm start from {init_from}: {len(copied)} tensors copied.")
        with progress_bar(out, "Encoding training texts", "texts") as update:
            features = FeatureTable.build(encoder, data.texts(statements_only=only == "prompts"),
                                          cache_root() / "retrieval-features", update)
        identity = ModelIdentity(model_fingerprint(llm), llm.get_input_embeddings().embedding_dim)
        trainer = Trainer(network, encoder, llm, tok, data.train, data.validation_batches(validation_size),
                          features, config, run_dir, identity, harness_evaluation(llm, tok))
    except (CheckpointError, ValueError, OSError) as error:
        fail(str(error))
    if trainer.step:
        out.print(f"Resuming {run_dir} at step {trainer.step} of {steps}.")
    with progress_bar(out, f"Training {name}", "steps") as update:
        def report(event):
            update(event.step, event.steps)
            if event.step % 25 == 0:
                losses = " ".join(f"{key} {value:.3f}" for key, value in event.losses.items())
                out.print(f"step {event.step}: {losses}")
            if event.validation is not None:
                out.print(_validation_line(event.validation))
        best = trainer.run(report)
    out.print(f"Done: {trainer.step} steps in {trainer.seconds / 60:.1f} min; best {best}.")
    if export_dir is not None:
        export(run_dir, export_dir, earlier, earlier_logs)
        out.print(f"Exported the best network to {export_dir}.")


def default_run_dir(name: str) -> Path:
    """Where a training run named `name` keeps its resumable state unless --run-dir says otherwise."""
    return cache_root() / "retrieval-runs" / name


def _parse_weights(options: tuple[str, ...]) -> dict[str, float]:
    weights = {}
    for option in options:
        name, _, weight = option.partition("=")
        try:
            weights[name.strip()] = float(weight)
        except ValueError:
            raise ValueError(f"--benchmark-weight takes NAME=WEIGHT (e.g. medcfpp=2), not {option!r}.") from None
    return weights


def _alignment_statements(data, count: int, seed: int) -> tuple[list[str], list[str]]:
    """`count` train statements to fit the encoder-slot alignment on (a seeded draw over all
    benchmarks) and the next ALIGNMENT_CHECK ones to measure it on."""
    statements = sorted({statement_text(request) for requests in data.train.values() for request in requests})
    random.Random(f"{seed}:alignment").shuffle(statements)
    return statements[:count], statements[count : count + ALIGNMENT_CHECK]


def _validation_line(validation: dict) -> str:
    parts = [f"validation at step {validation['step']}: score {validation['score']:.3f}"]
    for bench, result in validation.items():
        if isinstance(result, dict) and "retrieval" in result:
            rates = result["retrieval"]
            scores = (f" eff {result['efficacy']:.2f} gen {result['generality']:.2f} "
                      f"loc {result['locality_mean']:.2f}" if "efficacy" in result else "")
            parts.append(f"{bench}:{scores} correct {rates['correct']:.2f} unwanted {rates['unwanted']:.2f}")
    return " | ".join(parts)


def _warm_start(network, checkpoint: Path, part: str) -> list[str]:
    """Copy the tensors of `checkpoint` whose name and shape match into `network`: all of them,
    or only those of the prompt path or of the retriever (see RetrievalNetwork.part_parameters)."""
    source = load_network(checkpoint, expect_llm=None).network.state_dict()
    target = network.state_dict()
    wanted = target.keys() if part == "all" else network.part_parameters(part).keys()
    copied = [key for key, value in source.items()
              if key in wanted and target[key].shape == value.shape]
    network.load_state_dict({**target, **{key: source[key] for key in copied}})
    return copied


def export(run_dir: Path, target: Path, earlier: tuple[Path, ...] = (), earlier_logs: tuple[Path, ...] = ()) -> None:
    """Best network of `run_dir` in bf16, the training log of every stage (the stages of the
    `earlier_logs` of previous exports, then the `earlier` run folders, then this run: loss
    curve, validation history, time) and a plot of it."""
    import torch

    # Read first: a run that started from a shipped checkpoint is usually exported over it.
    stages = [stage for log in earlier_logs for stage in json.loads(log.read_text())["stages"]]
    checkpoint = load_network(run_dir / BEST_FILE, expect_llm=None)
    save_network(target / NETWORK_FILE, checkpoint.network, llm=checkpoint.llm,
                 encoder=checkpoint.encoder, storage_dtype=torch.bfloat16)
    for folder in (*earlier, run_dir):
        header, _ = read_checked(folder / STATE_FILE, STATE_FORMAT, "Training state")
        stages.append({
            "run": folder.name,
            "steps": header["step"],
            "training_seconds": header["seconds"],
            "training": header["training"],
            "best": header["best"],
            "loss_curve_every_50_steps": loss_curve(header["history"], every=50),
            "validation": header["history"]["validation"],
        })
    log = {"network": checkpoint.network.config.to_json(), "stages": stages}
    (target / TRAINING_LOG_FILE).write_text(json.dumps(log, indent=1) + "\n")
    _plot(stages, target / "loss.png")


def _plot(stages: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(len(stages), 2, figsize=(9, 3.2 * len(stages)), squeeze=False)
    for (losses, scores), stage in zip(axes, stages):
        curve = stage["loss_curve_every_50_steps"]
        steps = [row["step"] for row in curve]
        for key in ("reliability", "generality", "locality_kl", "neighbour_nce", "sentinel_nce"):
            if key in curve[0]:
                losses.plot(steps, [row.get(key) for row in curve], label=key)
        losses.set_yscale("log")
        losses.set_xlabel("step")
        losses.set_title(f"{stage['run']}: losses (mean per 50 steps)", fontsize=9)
        losses.legend(fontsize=7)
        validation = stage["validation"]
        scores.plot([v["step"] for v in validation], [v["score"] for v in validation], marker="o")
        scores.set_xlabel("step")
        scores.set_title(f"{stage['run']}: validation score", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)
