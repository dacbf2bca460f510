"""Atomic file output: a write either lands completely under its final name or not at all.

An interrupted run must never leave a half-written file that a later run would trust, so every
file is written under a temporary name in the destination folder, flushed to disk, and only
then renamed over the final path (a rename within one file system is atomic).
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write to; on success it replaces `path`, on error it vanishes.

    The temporary file lives beside `path` (same file system, so `os.replace` is atomic) and
    starts empty; the writer may reopen or overwrite it by name.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    temporary = final.parent / f".{final.name}.{secrets.token_hex(8)}.tmp"
    # Created by hand rather than with mkstemp, whose 0600 mode would survive the rename and
    # hide the file from other users; here the process umask decides, as for any new file.
    os.close(os.open(temporary, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
    try:
        yield temporary
        _fsync_file(temporary)
        os.replace(temporary, final)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    # The rename itself is only durable once the folder entry is on disk.
    _fsync_directory(final.parent)


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as stream:
        os.fsync(stream.fileno())


def _fsync_directory(folder: Path) -> None:
    # Windows cannot open a folder for fsync; the rename is still atomic there.
    if os.name != "posix":
        return
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
