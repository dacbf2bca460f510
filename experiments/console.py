"""Terminal output for CLI commands: one Rich console, progress bars, and one-sentence errors.

Library code never prints; it reports progress through callbacks that these helpers provide.
"""

from __future__ import annotations

import contextlib
import sys
import warnings
from typing import Callable, Iterator, NoReturn, Sequence

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from lm.errors import UsageError

USAGE_ERROR = 2
INTERRUPTED = 130  # 128 + SIGINT, what shells report for a program stopped by Ctrl-C


def fail(message: str) -> NoReturn:
    """Print one sentence to stderr and exit with the usage-error code."""
    click.echo(f"Error: {message}", err=True)
    sys.exit(USAGE_ERROR)


@contextlib.contextmanager
def exit_codes() -> Iterator[None]:
    """How a command ends when it does not succeed: a `UsageError` prints its sentence and
    exits 2; Ctrl-C exits 130 (every file is written atomically, so it leaves no partial
    report or cache entry); anything else is a bug and propagates with its traceback (exit 1)."""
    try:
        yield
    except UsageError as error:
        fail(str(error).strip() or type(error).__name__)
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        sys.exit(INTERRUPTED)


def console(quiet: bool = False) -> Console:
    # Piped or logged output would otherwise be cut at 80 columns, which truncates table cells.
    width = None if sys.stdout.isatty() else 160
    return Console(stderr=False, quiet=quiet, highlight=False, width=width)


@contextlib.contextmanager
def progress_bar(out: Console, description: str, unit: str) -> Iterator[Callable[[int, int], None]]:
    """Yield `update(done, total)`; shows a bar with rate (`unit`/s) and ETA."""
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=out, disable=out.quiet, transient=False) as bar:
        task = bar.add_task(description, total=None, rate="")

        def update(done: int, total: int) -> None:
            speed = bar.tasks[task].speed
            rate = f"{speed:,.0f} {unit}/s" if speed else ""
            bar.update(task, completed=done, total=total, rate=rate)

        yield update


@contextlib.contextmanager
def stages(out: Console, total: int) -> Iterator[Callable[[str], None]]:
    """Yield `begin(title)`, called as each of `total` stages starts; shows the stage, how
    many are done and the elapsed time (for long steps that report no progress of their own)."""
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=out, disable=out.quiet, transient=False) as bar:
        task = bar.add_task("", total=total)
        begun = []

        def begin(title: str) -> None:
            bar.update(task, description=title, completed=len(begun))
            begun.append(title)

        yield begin
        bar.update(task, completed=len(begun))


@contextlib.contextmanager
def quiet_libraries() -> Iterator[None]:
    """Hide the Python warnings libraries print (deprecations, dtype notes) during a step whose
    own output is the progress display; editscope's own warnings go through logging and stay."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


@contextlib.contextmanager
def job_board(out: Console, titles: Sequence[str]) -> Iterator["JobBoard"]:
    """One progress line per job for jobs running side by side: waiting, then its batches
    with elapsed time once a worker takes it."""
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[state]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=out, disable=out.quiet, transient=False) as bar:
        tasks = [bar.add_task(title, total=None, start=False, state="waiting") for title in titles]
        yield JobBoard(bar, tasks)


class JobBoard:
    """`experiments.workers.JobEvents` shown as progress lines."""

    def __init__(self, bar: Progress, tasks: Sequence[int]):
        self.bar, self.tasks = bar, tasks

    def started(self, index: int) -> None:
        self.bar.start_task(self.tasks[index])
        self.bar.update(self.tasks[index], state="running")

    def progress(self, index: int, done: int, total: int) -> None:
        self.bar.update(self.tasks[index], completed=done, total=total)

    def finished(self, index: int) -> None:
        task = self.tasks[index]
        self.bar.update(task, state="done")
        self.bar.stop_task(task)
