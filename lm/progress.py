"""The two shapes of progress callback. Library code reports progress through them and never
prints; the CLI turns them into Rich progress bars (experiments/console.py)."""

from __future__ import annotations

from typing import Callable

Progress = Callable[[int, int], None]  # (done, total)
StageProgress = Callable[[str, int, int], None]  # (stage, done, total): work in named stages
