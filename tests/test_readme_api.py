"""The README's Python API example runs as written (with the session's embedded model)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import editscope

README = Path(__file__).resolve().parents[1] / "README.md"


def api_example() -> str:
    section = README.read_text().split("## Python API", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.mark.slow
def test_the_readme_python_api_example_runs(tmp_path, monkeypatch, default_model, capsys):
    # The session's embedded model instead of a second load: the example undoes every edit.
    monkeypatch.setattr(editscope, "load_model", lambda *args, **kwargs: default_model)
    monkeypatch.chdir(tmp_path)
    exec(compile(api_example(), str(README), "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == "The mother tongue of Danielle Darrieux is -> English"
    assert printed[1].startswith("[' English")
    runs = [line.split()[0] for line in printed[3:6]]
    assert runs == ["unedited", "memit", "medrek"] and printed[-1] == "memit"
    (folder,) = (tmp_path / "reports").iterdir()
    assert (folder / "report.json").is_file() and (folder / "report.html").is_file()
