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


def test_leftovers_of_killed_writes_are_cleaned(tmp_path):
    import os
    import time

    path = tmp_path / "out.txt"
    dead = tmp_path / ".out.txt.999999999.abcd1234.tmp"  # no such process
    live = tmp_path / f".out.txt.{os.getppid()}.abcd1234.tmp"  # a writer still running
    old = tmp_path / ".out.txt.zz9x_old.tmp"  # before temp names carried a process id
    other = tmp_path / ".other.txt.999999999.abcd1234.tmp"  # another target's
    for p in (dead, live, old, other):
        p.write_text("half")
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    write_text_atomic(path, "new")
    assert path.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["out.txt", live.name, other.name])


def test_failed_write_leaves_no_temporary_file(tmp_path, monkeypatch):
    import os

    path = tmp_path / "out.txt"
    path.write_text("old")

    def fail(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(PlannerError, match="No space left"):
        write_text_atomic(path, "new")
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"] and path.read_text() == "old"


def test_a_pair_is_replaced_together_despite_a_signal(tmp_path, monkeypatch):
    import os
    import signal

    from planner.fileio import Interrupted, exit_on_signals, write_texts_atomic

    a, b = tmp_path / "r.html", tmp_path / "r.md"
    a.write_text("old html")
    b.write_text("old md")
    real = os.replace
    calls = []

    def replace_and_signal(src, dst):
        calls.append(dst)
        if len(calls) == 1:
            os.kill(os.getpid(), signal.SIGTERM)  # arrives between the two renames
        real(src, dst)

    monkeypatch.setattr(os, "replace", replace_and_signal)
    with pytest.raises(Interrupted) as e, exit_on_signals():
        write_texts_atomic([(a, "new html"), (b, "new md")])
    assert e.value.exit_code == 128 + signal.SIGTERM
    assert (a.read_text(), b.read_text()) == ("new html", "new md")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.html", "r.md"]


def test_a_signal_before_the_renames_keeps_both_old_files(tmp_path, monkeypatch):
    import os
    import signal

    import planner.fileio as fileio
    from planner.fileio import Interrupted, exit_on_signals, write_texts_atomic

    a, b = tmp_path / "r.html", tmp_path / "r.md"
    a.write_text("old html")
    b.write_text("old md")
    real = fileio._write_file

    def write_then_signal(tmp, text):
        real(tmp, text)
        if text == "new md":
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(fileio, "_write_file", write_then_signal)
    with pytest.raises(Interrupted), exit_on_signals():
        write_texts_atomic([(a, "new html"), (b, "new md")])
    assert (a.read_text(), b.read_text()) == ("old html", "old md")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.html", "r.md"]


def test_check_writable_tries_instead_of_asking(tmp_path):
    from planner.fileio import check_writable, is_sqlite_file

    assert check_writable(tmp_path / "x.json") == tmp_path / "x.json"
    assert list(tmp_path.iterdir()) == []  # the probe file is gone
    for bad, why in ((tmp_path, "is a directory"), ("/dev/null", "not a regular file"),
                     (tmp_path / "no" / "x", "does not exist"), ("/proc/x.json", "/proc")):
        with pytest.raises(PlannerError, match=why):
            check_writable(bad)
    assert check_writable(tmp_path / "a" / "b" / "c.json", create_parents=True)
    assert not (tmp_path / "a").exists()
    import sqlite3
    sqlite3.connect(tmp_path / "db").execute("CREATE TABLE t (x)").connection.commit()
    assert is_sqlite_file(tmp_path / "db") and not is_sqlite_file(tmp_path / "nothing")
