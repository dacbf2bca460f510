"""Facts about a local model folder, remembered in the cache until any of its files changes.

Some facts (a fingerprint over every weight byte, a tokenizer probe) cost a full model load to
learn, while a caller that only needs the facts could otherwise skip the load. A memo stores
them next to a snapshot of the folder's files; it is returned only while the folder still
matches that snapshot, so a memo is never trusted after a file was added, removed, resized or
rewritten.

A snapshot holds every top-level regular file's name, size, mtime_ns and ctime_ns (following
symlinks, as loaders do). ctime is set by the kernel on every write or rename and cannot be set
back, so it also catches replacements that preserve size and mtime (`cp -p`, `rsync -t`).
Callers take the snapshot *before* reading the files and pass it to `remember`, which stores
nothing if the folder changed meanwhile: the facts then describe the very bytes the snapshot
describes (short of a same-size rewrite within one filesystem timestamp tick).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from lm.files import cache_root, write_json_atomic

MEMO_DIR = "folder-memos"

Snapshot = tuple[tuple[str, int, int, int], ...]  # (name, size, mtime_ns, ctime_ns), sorted by name


def folder_snapshot(folder: Path) -> Snapshot:
    entries = []
    with os.scandir(folder) as listing:
        for entry in listing:
            if entry.is_file():  # follows symlinks, like the loaders reading these files
                info = entry.stat()
                entries.append((entry.name, info.st_size, info.st_mtime_ns, info.st_ctime_ns))
    return tuple(sorted(entries))


def memo_path(folder: Path, kind: str) -> Path:
    """One memo file per (folder, kind); `kind` names what the facts are and how they were
    obtained (e.g. the load dtype and library versions), so differing facts never collide."""
    digest = hashlib.sha256(f"{kind}\0{Path(folder).resolve()}".encode()).hexdigest()[:24]
    return cache_root() / MEMO_DIR / f"{digest}.json"


def remember(folder: Path, kind: str, snapshot: Snapshot, facts: dict) -> bool:
    """Store `facts` about `folder` as of `snapshot` (taken before the facts were learnt).
    Returns False, storing nothing, if the folder no longer matches the snapshot."""
    if folder_snapshot(folder) != snapshot:
        return False
    payload = {"folder": str(Path(folder).resolve()), "kind": kind,
               "files": [list(entry) for entry in snapshot], "facts": facts}
    write_json_atomic(memo_path(folder, kind), payload)
    return True


def recall(folder: Path, kind: str) -> dict | None:
    """The remembered facts, or None if there are none or any file changed since."""
    path = memo_path(folder, kind)
    try:
        payload = json.loads(path.read_text())
        stored = tuple(tuple(entry) for entry in payload["files"])
        same_memo = payload["folder"] == str(Path(folder).resolve()) and payload["kind"] == kind
        facts = payload["facts"]
        unchanged = stored == folder_snapshot(folder)
    except (OSError, ValueError, KeyError, TypeError):
        return None  # absent or damaged memo, or folder gone: the caller learns the facts the slow way
    return facts if same_memo and unchanged and isinstance(facts, dict) else None
