"""lm.files: one atomic-write helper for files and folders, with the umask's permissions."""

from __future__ import annotations

import os
import stat

import pytest

from lm.files import atomic_directory, atomic_path, write_json_atomic


@pytest.fixture
def umask_022():
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_new_files_and_folders_get_the_umask_permissions(tmp_path, umask_022):
    write_json_atomic(tmp_path / "a" / "b.json", {"x": 1})
    with atomic_directory(tmp_path / "folder") as folder:
        (folder / "inside.txt").write_text("text")
    assert mode(tmp_path / "a" / "b.json") == 0o644
    assert mode(tmp_path / "folder") == 0o755
    assert mode(tmp_path / "folder" / "inside.txt") == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "folder"]  # no temporary left


def test_a_replaced_file_keeps_its_permissions(tmp_path, umask_022):
    path = tmp_path / "report.md"
    path.write_text("old")
    path.chmod(0o640)
    with atomic_path(path) as tmp:
        tmp.write_text("new")
    assert path.read_text() == "new" and mode(path) == 0o640


@pytest.mark.parametrize("error", [KeyboardInterrupt, ValueError])
def test_an_interrupted_write_leaves_nothing(tmp_path, error):
    (tmp_path / "kept.txt").write_text("old")
    with pytest.raises(error):
        with atomic_path(tmp_path / "kept.txt") as tmp:
            tmp.write_text("half")
            raise error()
    with pytest.raises(error):
        with atomic_directory(tmp_path / "never") as folder:
            (folder / "half.bin").write_bytes(b"x")
            raise error()
    assert [p.name for p in tmp_path.iterdir()] == ["kept.txt"]
    assert (tmp_path / "kept.txt").read_text() == "old"
