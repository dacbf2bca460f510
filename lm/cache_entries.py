"""Cache entries that are verified whenever they are read and repaired when damaged.

Every cache entry (one file, or a folder such as the dequantised default model) is written
atomically (`lm.files`) and then sealed: `<entry>.seal` beside it (JSON) records the size and
SHA-256 of each of its files. A reader calls `verified(entry)` before trusting it. An entry
that no longer matches its seal (truncated, overwritten, bit rot) or has none (written by an
older version, or interrupted between the write and the seal) is moved aside to
`<entry>.damaged`, one warning line names both paths, and the caller recomputes it as if it
had never been cached. So a damaged cache costs one recomputation, never a blocked command.

Checks that need the content (a covariance file of another statistic, a JSON file of the
wrong shape) use `set_aside(entry, reason)` the same way.

Hashing reads every byte; SHA-256 ran at ~1.8 GB/s on one idle core of the development
machine, so ~0.3 s for the 540 MB default model and milliseconds for the other entries.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any, Callable, Iterator

from lm.files import atomic_directory, atomic_path, write_json_atomic

SEAL_SUFFIX = ".seal"  # not ".json": globs for the entries must not find their seals
DAMAGED_SUFFIX = ".damaged"
SEAL_FORMAT = 1

# Unconfigured, Python's logging prints warnings on stderr, one line each: the CLI's output.
log = logging.getLogger("editscope.cache")


def seal_path(entry: Path) -> Path:
    return entry.with_name(entry.name + SEAL_SUFFIX)


def sealed_file(entry: str | os.PathLike) -> contextlib.AbstractContextManager[Path]:
    """`atomic_path` for a cache file: the written file is sealed once it is in place."""
    return _sealed(atomic_path, Path(entry))


def sealed_directory(entry: str | os.PathLike) -> contextlib.AbstractContextManager[Path]:
    """`atomic_directory` for a cache folder: the folder is sealed once it is in place."""
    return _sealed(atomic_directory, Path(entry))


@contextlib.contextmanager
def _sealed(atomic: Callable[[Path], contextlib.AbstractContextManager[Path]], entry: Path) -> Iterator[Path]:
    with atomic(entry) as tmp:
        yield tmp
    _write_seal(entry)


def write_sealed_json(entry: str | os.PathLike, payload: Any) -> None:
    write_json_atomic(entry, payload)
    _write_seal(Path(entry))


def read_sealed_json(entry: str | os.PathLike) -> Any | None:
    """The JSON content of a verified entry; None if absent, or damaged (then set aside)."""
    entry = Path(entry)
    if not verified(entry):
        return None
    try:
        return json.loads(entry.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:  # sealed while already broken: still only a cache
        set_aside(entry, f"not readable JSON ({error})")
        return None


def verified(entry: str | os.PathLike) -> bool:
    """Whether `entry` exists and matches its seal. A damaged or unsealed entry is set aside
    (see the module docstring) and reported as absent."""
    entry = Path(entry)
    if not entry.exists():
        return False
    try:
        seal = json.loads(seal_path(entry).read_text(encoding="utf-8"))
        recorded = seal["files"] if seal.get("format") == SEAL_FORMAT else None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        recorded = None
    if recorded is None:
        set_aside(entry, "it has no valid seal recording its size and checksum: written by an "
                         "older editscope, or interrupted")
        return False
    try:
        actual = _file_facts(entry)
    except OSError as error:
        set_aside(entry, f"it cannot be read ({error.strerror or error})")
        return False
    if actual != recorded:
        set_aside(entry, _difference(recorded, actual))
        return False
    return True


def set_aside(entry: str | os.PathLike, reason: str) -> None:
    """Move a damaged entry to `<entry>.damaged` (replacing an older one), drop its seal, and
    say so in one warning line; the caller then recomputes the entry."""
    entry = Path(entry)
    aside = entry.with_name(entry.name + DAMAGED_SUFFIX)
    try:
        if aside.is_dir():
            shutil.rmtree(aside)
        else:
            aside.unlink(missing_ok=True)
        os.replace(entry, aside)
    except FileNotFoundError:
        return  # another process set it aside first, and warned
    seal_path(entry).unlink(missing_ok=True)
    log.warning("Warning: cache entry %s cannot be trusted (%s); moved it to %s and recomputing.", entry, reason, aside)


def _write_seal(entry: Path) -> None:
    if entry.exists():  # a folder entry may have been finished by another process instead
        write_json_atomic(seal_path(entry), {"format": SEAL_FORMAT, "files": _file_facts(entry)})


def _file_facts(entry: Path) -> dict[str, list]:
    """{relative path: [size, sha256]} of the entry's files ("." for a file entry)."""
    if not entry.is_dir():
        return {".": _size_and_digest(entry)}
    return {str(path.relative_to(entry)): _size_and_digest(path)
            for path in sorted(entry.rglob("*")) if path.is_file()}


def _size_and_digest(path: Path) -> list:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 22):
            digest.update(chunk)
            size += len(chunk)
    return [size, digest.hexdigest()]


def _difference(recorded: dict[str, list], actual: dict[str, list]) -> str:
    """One phrase saying how the entry differs from its seal (first difference only)."""
    for name in sorted(set(recorded) | set(actual)):
        if name not in actual:
            return f"{name} is missing"
        if name not in recorded:
            return f"{name} was not part of it"
        (size, _), (now, _) = recorded[name], actual[name]
        where = "the file" if name == "." else name
        if size != now:
            return f"{where} has {now:,} bytes instead of {size:,}"
        if recorded[name] != actual[name]:
            return f"the checksum of {where} differs"
    return "it differs from its seal"
