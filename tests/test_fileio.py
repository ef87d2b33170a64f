"""Atomic writes: the old file survives a failed write; errors are one line."""

import pytest

from planner.errors import PlannerError
from planner.fileio import atomic_path, write_text_atomic


def test_write_and_replace(tmp_path):
    path = tmp_path / "out.txt"
    write_text_atomic(path, "one")
    write_text_atomic(path, "two")
    assert path.read_text() == "two"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]  # no temporary files left


def test_failure_keeps_the_old_file(tmp_path):
    path = tmp_path / "out.txt"
    path.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(path) as tmp:
            tmp.write_text("half")
            raise RuntimeError("interrupted")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_missing_directory_is_a_planner_error(tmp_path):
    with pytest.raises(PlannerError, match="cannot write .*missing"):
        write_text_atomic(tmp_path / "missing" / "x.txt", "text")
