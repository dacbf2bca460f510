"""Publishing a report folder whole: every file or none, and the records never lost.

The folder is assembled under a hidden temporary name inside the reports folder (report.json,
then the Markdown, CSV and HTML rendered from it) and renamed to its final name only when
complete, so an interrupted publish leaves no folder a reader could mistake for a report.
If the reports folder cannot be written at that point (a disk that filled up during the run,
permissions changed meanwhile), report.json is saved under the cache root instead and the
error says where, so the run's measurements survive and `editscope report` can render them.
"""

from __future__ import annotations

import errno
import os
import secrets
import shutil
import tempfile
from pathlib import Path

from experiments.report.document import REPORT_FILE, Report, folder_name
from experiments.report.errors import ReportError
from experiments.report.render import render_all
from lm.files import atomic_directory, cache_root, temporary_name

UNPUBLISHED_DIR = "unpublished"
_NAME_TAKEN = (errno.EEXIST, errno.ENOTEMPTY)


def publish_report(report: Report, reports_root: str | Path) -> Path:
    """Write `report` as a new, complete folder `<reports_root>/<created>-<command>[-n]/`
    and return it. ReportError (one sentence, naming where the records were saved instead)
    if the folder cannot be written."""
    text = report.to_json() + "\n"  # serialised first: a report that cannot be JSON writes nothing
    root = Path(reports_root)
    name = folder_name(report)
    try:
        root.mkdir(parents=True, exist_ok=True)
        assembling = temporary_name(root / name)
        os.mkdir(assembling, 0o777)
        try:
            (assembling / REPORT_FILE).write_text(text, encoding="utf-8")
            render_all(assembling)
            return _rename_to_free_name(assembling, root, name)
        finally:
            shutil.rmtree(assembling, ignore_errors=True)
    except OSError as error:
        saved = _save_elsewhere(name, text)
        where = (f"its report.json was saved to {saved}; render it there with `editscope report {saved}`"
                 if saved else "no other place could be written either")
        raise ReportError(f"Cannot write the report under {root} ({error.strerror or error}); {where}.") from None


def _rename_to_free_name(assembling: Path, root: Path, name: str) -> Path:
    """`name`, else `name-2`, `name-3`, ... (two runs of one command can finish within the
    same second); a rename never replaces a non-empty folder, so no report is overwritten."""
    for attempt in range(1, 1000):
        final = root / (name if attempt == 1 else f"{name}-{attempt}")
        if final.exists():
            continue
        try:
            os.rename(assembling, final)
            return final
        except OSError as error:
            if error.errno not in _NAME_TAKEN:
                raise
    raise ReportError(f"Could not find a free folder name for {name} in {root}.")


def _save_elsewhere(name: str, text: str) -> Path | None:
    """report.json in a new folder under the cache root (else the system's temporary folder)."""
    unique = f"{name}-{secrets.token_hex(3)}"
    for base in (cache_root() / UNPUBLISHED_DIR, Path(tempfile.gettempdir()) / f"editscope-{UNPUBLISHED_DIR}"):
        try:
            with atomic_directory(base / unique) as folder:
                (folder / REPORT_FILE).write_text(text, encoding="utf-8")
            return base / unique
        except OSError:
            continue
    return None
