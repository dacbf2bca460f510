"""editscope's Python API: the objects the CLI uses, under one roof (no second code path).

    import editscope

    model, tok = editscope.load_model()                  # embedded SmolLM2-135M (or an HF id/folder)
    edits = editscope.load_edits("my_edits.jsonl")       # canonical, shipped or --fields-mapped
    editor = editscope.make_editor("memit", model)
    applied = editor.apply(model, tok, edits)            # edit; `applied.scorer` sees the edit
    applied.undo()                                       # weights back bit for bit
    record = editscope.evaluate(editor, model, tok, edits)          # apply, score, undo: a RunRecord
    report = editscope.compare(["memit", "medrek"], model, tok, edits)  # the `compare` command's runs
    editscope.write_report(report, "reports")            # report.json + Markdown/CSV/HTML

This package sits above every other layer (lm < data < editors, retrieval < experiments <
editscope, cli.py) and only gathers: each name below is the function or class the CLI calls.
See README.md, "Python API".
"""

from data.requests import EditRequest, LocalityProbe
from experiments.answers import answer
from experiments.discovery import build_editor as make_editor
from experiments.records import RunRecord, Settings
from experiments.report import Report, read_report
from experiments.saved_edits import EditedModel, edit_in_memory, open_saved_edits
from lm.loading import load as load_model
from editscope.api import compare, evaluate, load_edits, write_report

__all__ = [
    "EditRequest", "EditedModel", "LocalityProbe", "Report", "RunRecord", "Settings", "answer", "compare",
    "edit_in_memory", "evaluate", "load_edits", "load_model", "make_editor", "open_saved_edits", "read_report",
    "write_report",
]
