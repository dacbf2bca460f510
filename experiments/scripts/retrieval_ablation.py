"""MedREK ablations on one MedCF++ test batch: with vs without the attention prompt encoder,
with vs without the shared query-key MLP.

    python -m experiments.scripts.retrieval_ablation [--edits 100] [--seed 0] [--out FILE]
        [--variant NAME=PATH ...]

Default variants: the shipped MedREK; the same network with its T prompt tokens replaced by
their mean (what the published single key/value attention yields: T identical tokens); and the
ablation networks trained with the commands in retrieval/README.md, when their best checkpoints
exist under $EDITSCOPE_CACHE/retrieval-runs/ (a missing one is named and skipped). Besides the
scores, "prompt tokens alike" is the mean pairwise cosine similarity between the T prompt tokens
of one edit (1.0: all T identical).
"""

from __future__ import annotations

import json
from pathlib import Path

import click
import torch
import torch.nn.functional as F
from torch import nn
from rich.table import Table

from data.batches import unconfounded_batch, validate_batch
from data.benchmarks import load_benchmark
from experiments.console import console, fail
from lm.files import cache_root
from lm.loading import load
from retrieval.checkpoint import CheckpointError
from retrieval.editor import RetrievalEditor
from retrieval.encoder import KnowledgeEncoder
from retrieval.evaluation import distinct_key_share, evaluate_batch, unedited_locality_argmax


SAME_TOKENS = "MedREK, T prompt tokens made identical (their mean)"


def trained_ablations() -> dict[str, Path]:
    runs = cache_root() / "retrieval-runs"
    return {
        "without attention (MLP prompt encoder)": runs / "medrek-mlp" / "best.safetensors",
        "without shared query-key MLP": runs / "medrek-separate" / "best.safetensors",
    }


class IdenticalPromptTokens(nn.Module):
    """A prompt encoder whose T output tokens are all the mean of the wrapped encoder's: the
    published single key/value attention gives T identical tokens (ALGORITHMS.md §9); this asks
    what a trained network loses when its tokens cannot differ."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, *args, **kwargs) -> torch.Tensor:
        prompts = self.inner(*args, **kwargs)
        return prompts.mean(dim=1, keepdim=True).expand_as(prompts)


def default_editors(encoder, terminal) -> dict:
    editors = {"MedREK": RetrievalEditor.from_checkpoint("medrek", encoder)}
    same = RetrievalEditor.from_checkpoint("medrek", encoder)
    same.network.prompt_encoder = IdenticalPromptTokens(same.network.prompt_encoder)
    editors[SAME_TOKENS] = same
    for name, path in trained_ablations().items():
        if path.is_file():
            editors[name] = RetrievalEditor.from_checkpoint(str(path), encoder)
        else:
            terminal.print(f"[yellow]skipped {name}[/yellow]: {path} not found (train it with the command "
                           "in retrieval/README.md).")
    return editors


@click.command()
@click.option("--edits", type=int, default=100, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--benchmark", default="medcfpp", show_default=True)
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Write all numbers as JSON.")
@click.option("--variant", "variants", multiple=True, help="NAME=PATH of a checkpoint [default: see above].")
def main(edits: int, seed: int, benchmark: str, out: Path | None, variants: tuple[str, ...]) -> None:
    terminal = console()
    model, tok = load("default")
    encoder = KnowledgeEncoder.load("default", device=model.device)
    try:
        if variants:
            sources = dict(item.split("=", 1) for item in variants)
            editors = {name: RetrievalEditor.from_checkpoint(path, encoder) for name, path in sources.items()}
        else:
            editors = default_editors(encoder, terminal)
    except (CheckpointError, ValueError) as error:
        fail(str(error))
    checked = validate_batch(unconfounded_batch(load_benchmark(benchmark, "test"), edits, seed))
    requests = list(checked.requests)
    terminal.print(f"[bold]{benchmark} test, {len(requests)} edits (seed {seed})[/bold]: {checked.ceiling.sentence}")
    unedited = unedited_locality_argmax(model, tok, requests)
    table = Table("variant", "efficacy", "generality", "locality mean", "correct retrieval",
                  "unwanted retrieval", "prompt tokens alike")
    results = {"ceiling": checked.ceiling.sentence}
    for name, editor in editors.items():
        evaluation = evaluate_batch(editor, model, tok, requests, unedited)
        alike = prompt_token_similarity(editor, model, tok, requests)
        reachable = distinct_key_share(requests, editor.network.key_text)
        results[name] = {**evaluation.to_json(), "prompt_tokens_alike": alike, "correct_retrieval_ceiling": reachable}
        table.add_row(
            name, f"{evaluation.efficacy:.3f} (≤{checked.ceiling.efficacy:.2f})", f"{evaluation.generality:.3f}",
            f"{evaluation.locality_mean:.3f}", f"{evaluation.retrieval.correct:.3f} (≤{reachable:.2f})",
            f"{evaluation.retrieval.unwanted:.3f}", f"{alike:.3f}",
        )
    terminal.print(table)
    if out is not None:
        out.write_text(json.dumps(results, indent=1) + "\n")
        terminal.print(f"Wrote {out}.")


def prompt_token_similarity(editor, model, tok, requests) -> float:
    """Mean over edits of the mean pairwise cosine similarity between its T prompt tokens."""
    applied = editor.apply(model, tok, requests)
    try:
        prompts = applied.store.memory.values_for(applied.ids).float()  # [N, T, d]
    finally:
        applied.undo()
    unit = F.normalize(prompts, dim=-1)
    cosine = unit @ unit.transpose(1, 2)  # [N, T, T]
    length = prompts.shape[1]
    off_diagonal = ~torch.eye(length, dtype=torch.bool)
    return float(cosine[:, off_diagonal].mean()) if length > 1 else 1.0


if __name__ == "__main__":
    main()
