"""Where editscope keeps derived files, and the one way it writes files and folders.

One cache root: `$EDITSCOPE_CACHE`, else `$XDG_CACHE_HOME/editscope`, else `~/.cache/editscope`.

Every write goes to a temporary name in the destination folder and is renamed into place
(a rename within one file system is atomic), so an interrupted run, Ctrl-C included, never
leaves a half-written file or folder under a name a later run would trust.

New files and folders get the permissions the process umask gives any new file (0644 and
0755 under the usual umask 022), so a cache or report on a shared machine stays readable by
others; `tempfile.mkstemp`/`mkdtemp` would make them 0600/0700, and the rename would keep that.
A file that replaces an existing one keeps the existing file's permissions, so rewriting a
committed report does not change its mode.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import stat
from pathlib import Path
from typing import Iterator


def cache_root() -> Path:
    explicit = os.environ.get("EDITSCOPE_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "editscope"


def temporary_name(final: Path) -> Path:
    """A fresh hidden name beside `final` (same folder, hence same file system)."""
    return final.parent / f".{final.name}.{secrets.token_hex(6)}.tmp"


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary file beside `final`; it replaces `final` only if the block
    succeeds, and vanishes otherwise. The writer may reopen or overwrite it by name."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(final)
    # 0o666 before the umask, exactly as open(..., "w") would create it.
    os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        with contextlib.suppress(FileNotFoundError):
            os.chmod(tmp, stat.S_IMODE(os.stat(final).st_mode))
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_directory(final.parent)  # the rename is durable only once the folder entry is


@contextlib.contextmanager
def atomic_directory(final: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary folder beside `final` that becomes `final` if the block
    succeeds and is removed otherwise.

    If `final` appeared meanwhile, another process finished the same work first: its copy
    is kept (equally valid) and ours discarded. Callers that must not lose their own output
    check first that `final` does not exist (`edit --save`) or rename by hand (reports).
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(final)
    os.mkdir(tmp, 0o777)  # before the umask, as for any new folder
    try:
        yield tmp
        if not final.exists():
            os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    _fsync_directory(final.parent)


def unwritable_reason(folder: str | os.PathLike) -> str | None:
    """Why new files cannot be created in `folder` (or in the folder that would hold it, if it
    does not exist yet), or None if they can. It creates and removes one probe file, so it
    leaves nothing behind and is right where permission bits are not the whole story (a
    read-only mount, a process running as root)."""
    folder = Path(folder).expanduser().absolute()
    existing = folder
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is a file, not a folder"
    probe = temporary_name(existing / "probe")
    try:
        os.close(os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
    except OSError as error:
        return f"{existing} is not writable ({error.strerror})"
    probe.unlink()
    return None


def write_json_atomic(path: str | os.PathLike, payload: object) -> None:
    with atomic_path(Path(path)) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")


def _fsync_directory(folder: Path) -> None:
    if os.name != "posix":  # Windows cannot open a folder for fsync; the rename is atomic anyway
        return
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
