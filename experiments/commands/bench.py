"""`editscope bench medical`: MedREK-style result tables (Eff, Gen, TD/EM/SS/TS locality, Avg)
for every editor on the medical benchmarks, in batch mode at each batch size.

Every benchmark's edits are drawn once (seeded) and edited by every editor at every batch
size; the jobs run through `sweep`, so the command scales out under torchrun.
"""

from __future__ import annotations

from pathlib import Path

import click

from covariance.distributed import current_rank
from data.benchmarks import BENCHMARKS
from experiments.commands.common import field_map_option, max_target_tokens_option
from experiments.commands.sweep import batch_sizes_of, run_batch_size_sweep, sweep_edits
from experiments.commands.sweep_options import SweepArguments, sweep_options
from experiments.console import fail
from lm.loading import load

MEDICAL_BENCHMARKS = ("medcf", "medcfpp", "medversa")


@click.group("bench")
def bench_command() -> None:
    """Full benchmark tables in the papers' shape."""


@bench_command.command("medical")
@click.option("--benchmark", "benchmark_text", default="all", show_default=True,
              help="medcf, medcfpp, medversa, all (the three), a comma-separated list of them, or a "
                   "path to a JSON/JSONL file in one of their formats, the canonical one or any layout "
                   "read through --fields.")
@click.option("--batch", "batch_text", default="1,10,50,100", show_default=True,
              help="Batch sizes; every size edits the same drawn edits of a benchmark.")
@click.option("--edits", type=click.IntRange(min=1), default=None,
              help="Edits drawn per benchmark (test split) and edited at every batch size "
                   "(default: the largest batch size).")
@field_map_option
@max_target_tokens_option
@sweep_options()
def medical_command(benchmark_text, batch_text, edits, fields, max_target_tokens, sweep: SweepArguments):
    """Every editor on MedCF, MedCF++ and MedVersa (or those named) at every batch size: one
    table per benchmark and batch size, one report."""
    sizes = batch_sizes_of(batch_text, "--batch")
    benchmarks = medical_benchmarks(benchmark_text)
    sweep.editor_names()  # exits 2 on an unknown name before anything is drawn or loaded
    rank = current_rank()
    out = sweep.console(rank)
    # --fields reads the benchmark files given by path; the shipped ones have their own layout.
    edit_sets = [sweep_edits(benchmark, sizes, edits, seed, None, "--batch",
                             None if benchmark in BENCHMARKS else fields)
                 for seed in sweep.seeds for benchmark in benchmarks]
    model, tok = load(sweep.model_name)
    records = run_batch_size_sweep(edit_sets, sizes, model, tok, max_target_tokens, sweep, rank, out)
    if records is None:
        return
    sweep.publish("bench medical", dict(benchmark=benchmark_text, batch=list(sizes), edits=edits,
                                        fields=fields and fields.spec, max_target_tokens=max_target_tokens),
                  records, out)


def medical_benchmarks(text: str) -> tuple[str, ...]:
    """The benchmarks named by --benchmark, in the order given; exits 2 on a name that is
    neither a medical benchmark nor a JSON file path."""
    parts = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    if parts == ("all",):
        return MEDICAL_BENCHMARKS
    for part in parts:
        looks_like_file = Path(part).exists() or Path(part).suffix in (".json", ".jsonl", ".gz")
        if part in BENCHMARKS and part not in MEDICAL_BENCHMARKS:
            fail(f"bench medical runs {', '.join(MEDICAL_BENCHMARKS)}; run {part} with `stress batch-sweep "
                 f"--benchmark {part}`.")
        if part not in MEDICAL_BENCHMARKS and not looks_like_file:
            fail(f"Unknown benchmark {part!r}; choose {', '.join(MEDICAL_BENCHMARKS)}, all, or give a .json file.")
    if not parts:
        fail("--benchmark names no benchmark.")
    return parts
