"""How fast the published MedREK's prompt path learns with each kind of knowledge slot.

Both designs keep MedREK's constraint (nothing of the LLM enters the prompt) and differ only in
what the T prompt queries attend over:
  - `zv`: m slots projected from the pooled knowledge representation z_v (the shipped design);
  - `tokens`: the same m slots plus the knowledge encoder's own last-layer states of the
    statement's last n tokens, projected into the LLM's width (encoder slots).
Each design trains its prompt path from the same seeded initialisation with Adam, with the
training command's edit losses (first rephrasing and first locality probe of each edit), on
  - `--batches fixed`: one fixed handful of `--edits` train edits every step (how fast it fits), or
  - `--batches fresh`: a new seeded draw of `--edits` train edits every step, the same draws for
    both designs (how fast it learns what carries over to other edits),
and every `--eval-every` steps the reliability NLL of `--held-out` held-out train edits is
measured (prompts built from their statements, no gradient). Train splits only; half of every
set from each benchmark.

    python perf/medrek_slots.py [--batches fixed|fresh] [--edits 8] [--held-out 8] [--steps 30]
        [--lr 1e-3] [--encoder-tokens 16] [--eval-every 5]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lm.loading import load  # noqa: E402
from retrieval.encoder import KnowledgeEncoder  # noqa: E402
from retrieval.features import FeatureTable  # noqa: E402
from retrieval.medrek import new_medrek  # noqa: E402
from retrieval.network import statement_text  # noqa: E402
from retrieval.training import edit_losses  # noqa: E402
from retrieval.training_data import load_training_data  # noqa: E402

BENCHMARKS = ("counterfact", "medcfpp")


def fixed_batch(requests):
    """Each edit with its first rephrasing and first locality probe (no random choice)."""
    rephrasings = [r.rephrase_prompts[0] if r.rephrase_prompts else r.prompt for r in requests]
    probes = [next(((p.prompt, p.ground_truth) for g in r.locality.values() for p in g), None) for r in requests]
    return list(requests), rephrasings, probes


@click.command()
@click.option("--batches", type=click.Choice(["fixed", "fresh"]), default="fixed", show_default=True)
@click.option("--edits", type=int, default=8, show_default=True, help="Train edits per step, half per benchmark.")
@click.option("--held-out", type=int, default=8, show_default=True, help="Held-out edits, half per benchmark.")
@click.option("--steps", type=int, default=30, show_default=True)
@click.option("--lr", type=float, default=1e-3, show_default=True)
@click.option("--encoder-tokens", type=int, default=16, show_default=True)
@click.option("--eval-every", type=int, default=5, show_default=True)
def main(batches, edits, held_out, steps, lr, encoder_tokens, eval_every):
    llm, tok = load("default")
    encoder = KnowledgeEncoder.load("default", device=llm.device)
    data = load_training_data(benchmarks=BENCHMARKS, validation_size=held_out)
    half = edits // 2
    draws = torch.Generator().manual_seed(0)

    def train_batch(step):
        if batches == "fixed" or step == 0:
            start = 0
        else:
            blocks = min(len(data.train[name]) for name in BENCHMARKS) // half
            start = int(torch.randint(1, blocks, (1,), generator=draws)) * half
        return fixed_batch([r for name in BENCHMARKS for r in data.train[name][start : start + half]])

    train_batches = [train_batch(step) for step in range(steps)]
    held = fixed_batch([r for name in BENCHMARKS for r in data.validation[name][: held_out // 2]])
    statements = sorted({statement_text(r) for batch in [*train_batches, held] for r in batch[0]})
    with torch.no_grad():
        features = FeatureTable(statements, encoder.encode(statements).cpu())
    llm.requires_grad_(False)
    curves = {}
    for design, tokens in (("zv", 0), ("tokens", encoder_tokens)):
        network = new_medrek(encoder, llm, encoder_tokens=tokens)
        optimizer = torch.optim.Adam(network.parameter_groups()[1], lr=lr)
        rows, started = [], time.perf_counter()
        for step in range(steps + 1):
            if step % eval_every == 0:
                network.eval()
                with torch.no_grad():
                    scores = edit_losses(network, encoder, llm, tok, features, *held, bf16=True)
                rows.append({"step": step, "held_out": float(scores["reliability"])})
            if step == steps:
                break
            network.train()
            losses = edit_losses(network, encoder, llm, tok, features, *train_batches[step], bf16=True)
            total = sum(losses.values())
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            optimizer.step()
            if step % eval_every == 0:
                rows[-1].update({name: float(value.detach()) for name, value in losses.items()})
            click.echo(f"{design} step {step + 1}: " + " ".join(f"{k} {float(v.detach()):.3f}" for k, v in losses.items()))
        curves[design] = (rows, time.perf_counter() - started)
    click.echo(f"\n{batches} batches of {edits} train edits ({', '.join(BENCHMARKS)}), Adam lr {lr}, {steps} "
               f"steps; reliability NLL (nats/target token) before step k on that step's train batch "
               f"and on {held_out} held-out edits")
    click.echo("| step | " + " | ".join(f"{d} train | {d} held-out" for d in curves) + " |")
    click.echo("|---|" + "---|---|" * len(curves))
    for index, row in enumerate(curves["zv"][0]):
        cells = []
        for design in curves:
            other = curves[design][0][index]
            cells += [f"{other.get('reliability', float('nan')):.2f}", f"{other['held_out']:.2f}"]
        click.echo(f"| {row['step']} | " + " | ".join(cells) + " |")
    for design, (_, seconds) in curves.items():
        click.echo(f"{design}: {seconds / 60:.1f} min")


if __name__ == "__main__":
    main()
