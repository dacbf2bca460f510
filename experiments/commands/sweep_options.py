"""The options every sweep command (`stress`, `bench`, `akd`) takes, gathered into one
`SweepArguments` so a command's signature lists only its own options."""

from __future__ import annotations

import functools
from dataclasses import dataclass, fields
from typing import Any, Mapping, Sequence

import click
from rich.console import Console

from covariance.distributed import Rank
from editors.hparams_files import HparamsRequest
from experiments.commands.common import (
    hparams_option, hparams_request, model_option, output_options, publish, requested_editors, seed_option,
    workers_option,
)
from experiments.console import console
from experiments.records import RunRecord, Settings
from experiments.workers import WorkerPlan, available_cores, worker_count


@dataclass(frozen=True)
class SweepArguments:
    """What the user chose with the options `sweep_options` adds."""

    editor_list: str
    fluency_prompts: int
    fluency_tokens: int
    perplexity_tokens: int
    model_name: str
    seed: int
    seeds_text: str | None
    workers: str
    quiet: bool
    as_json: bool
    reports_dir: str
    hparams_files: tuple  # checked editors.hparams_files.HparamsFile, one per editor

    @property
    def seeds(self) -> tuple[int, ...]:
        return chosen_seeds(self.seed, self.seeds_text)

    @property
    def settings(self) -> Settings:
        return Settings(fluency_prompts=self.fluency_prompts, fluency_new_tokens=self.fluency_tokens,
                        perplexity_tokens=self.perplexity_tokens)

    def editor_names(self) -> tuple[str, ...] | None:
        """The validated --editors names (None: all); exits 2 on an unknown one."""
        return requested_editors(self.editor_list)

    def hparams(self, benchmark: str | None) -> HparamsRequest:
        """The weight editors' hyper-parameter choice: `benchmark`'s tables and the --hparams
        files (a UsageError when a file is for an editor not in --editors)."""
        return hparams_request(self.hparams_files, benchmark, self.editor_names())

    def worker_plan(self, jobs: int, key_value_overrides: Mapping[str, Any] | None = None,
                    hparams: HparamsRequest | None = None) -> WorkerPlan:
        """`run_jobs`' `plan` for --workers (validated while parsing)."""
        return worker_plan(self.workers, jobs, self.model_name, self.settings, key_value_overrides, hparams)

    def console(self, rank: Rank) -> Console:
        # Only rank 0 reports, and --json keeps stdout for the JSON alone.
        return console(self.quiet or self.as_json or not rank.is_main)

    def publish(self, command: str, own_arguments: dict[str, Any], records: Sequence[RunRecord], out: Console,
                analyses: dict[str, Any] | None = None) -> None:
        """`common.publish` with the report's arguments: the command's own, then these."""
        arguments = {**own_arguments, "editors": self.editor_list, "model": self.model_name, "seed": self.seed,
                     **({"seeds": list(self.seeds)} if self.seeds_text else {}),
                     "fluency_prompts": self.fluency_prompts, "fluency_tokens": self.fluency_tokens,
                     "perplexity_tokens": self.perplexity_tokens,
                     "hparams": [str(file.path) for file in self.hparams_files]}
        publish(command, arguments, records, out, self.reports_dir, self.as_json, analyses)


def sweep_options(default_editors: str = "all"):
    """Add --editors, the scoring, model, seed and output options to a command, which receives
    them as one keyword argument `sweep` (a `SweepArguments`)."""
    names = [field.name for field in fields(SweepArguments)]

    def decorate(command):
        @functools.wraps(command)
        def gathered(**given):
            sweep = SweepArguments(**{name: given.pop(name) for name in names})
            return command(**given, sweep=sweep)

        # Innermost first, as if stacked above the function: --help lists editors, scoring, model,
        # seed, then output options, after the command's own.
        for option in (output_options, workers_option, seeds_option, seed_option, model_option, hparams_option,
                       scoring_options, editors_option(default_editors)):
            gathered = option(gathered)
        return gathered

    return decorate


def chosen_seeds(seed: int, seeds_text: str | None) -> tuple[int, ...]:
    """--seeds (each draws its own batch of edits), else the one --seed."""
    return parse_seeds(seeds_text) if seeds_text else (seed,)


def parse_seeds(text: str) -> tuple[int, ...]:
    """"0,1,2" -> (0, 1, 2); ValueError naming the problem for anything else."""
    parts = [part.strip() for part in text.split(",") if part.strip()]
    try:
        seeds = tuple(int(part) for part in parts)
    except ValueError:
        raise ValueError(f"--seeds takes comma-separated whole numbers such as 0,1,2, not {text!r}.") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds needs one or more distinct seeds, not {text!r}.")
    return seeds


def _checked_seeds(_context, _parameter, value: str | None) -> str | None:
    """Refuse a bad --seeds while parsing, before any model is loaded."""
    if value is not None:
        try:
            parse_seeds(value)
        except ValueError as error:
            raise click.BadParameter(str(error)) from None
    return value


def seeds_option(function):
    return click.option(
        "--seeds", "seeds_text", default=None, callback=_checked_seeds,
        help="Comma-separated seeds, e.g. 0,1,2: one batch of edits drawn per seed, every editor run "
             "on each, and the report gives the mean and spread across seeds (overrides --seed).")(function)


def editors_option(default: str = "all"):
    return click.option("--editors", "editor_list", default=default, show_default=True,
                        help="'all' or a comma-separated list, e.g. memit,memit_merge,ft_l "
                             "(the unedited reference always runs too).")


def scoring_options(function):
    """--fluency-prompts, --fluency-tokens, --perplexity-tokens (as `compare` has them)."""
    function = click.option("--perplexity-tokens", type=click.IntRange(min=0), default=Settings.perplexity_tokens,
                            show_default=True, help="Held-out WikiText-2 target tokens for perplexity, each piece after its 16 preceding words (0: off).")(function)
    function = click.option("--fluency-tokens", type=click.IntRange(min=1), default=Settings.fluency_new_tokens,
                            show_default=True, help="New tokens per fluency continuation (sampled top-5, exactly this many).")(function)
    return click.option("--fluency-prompts", type=click.IntRange(min=0), default=Settings.fluency_prompts,
                        show_default=True, help="Edit prompts continued for fluency: the run's first N (0: off).")(function)


def worker_plan(requested: str, jobs: int, model_name: str, settings: Settings,
                key_value_overrides: Mapping[str, Any] | None = None,
                hparams: HparamsRequest | None = None) -> WorkerPlan:
    """`run_jobs`' `plan` for a --workers value (`workers_option` refused bad ones while
    parsing); the cores are shared out evenly as torch threads."""
    workers = worker_count(requested, jobs)
    return WorkerPlan(workers, model_name, settings, max(1, available_cores() // workers), key_value_overrides,
                      hparams)
