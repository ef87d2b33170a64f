"""Fault tests: real `planner measure` and `planner run --report` processes, killed with
SIGKILL, SIGTERM and SIGINT during meter set-up, while the wrapped command runs and during
the final write. After each: the ledger opens and holds every earlier row, no file is half
written or clobbered, no wrapped command is left running, the exit code is 128 + N (or the
command's own, once it has ended), and a handled signal gives one line on stderr.

No hooks in planner: the tests wait for planner's SIGTERM handler to appear in
/proc/PID/status (SigCgt), for the wrapped command (a unique argument) to appear in /proc, and
hold the ledger's lock themselves to catch planner in its final write.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from measure_support import sample_record

from planner.cli import cli
from planner.measurement.ledger import Ledger

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc")

PY = sys.executable
ROOT = Path(__file__).parent.parent
SIGNALS = [signal.SIGKILL, signal.SIGTERM, signal.SIGINT]
EARLIER = ["earlier00001", "earlier00002"]
MARK = "<!-- written by planner run --report: the markdown twin of out.html -->"


# --- helpers -----------------------------------------------------------------------------

def _wait(cond, timeout: float = 20.0, what: str = "condition") -> None:
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def _catches_sigterm(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("SigCgt:"):
                    return bool(int(line.split()[1], 16) >> (signal.SIGTERM - 1) & 1)
    except OSError:
        pass
    return False


def _procs_with(tag: str, planner: int | None = None) -> list[int]:
    """Live processes whose command line holds ``tag`` (zombies have none), other than
    ``planner`` (whose own arguments hold it)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != planner:
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    if tag.encode() in f.read():
                        found.append(int(entry))
            except OSError:
                continue
    return found


def _child(tag: str, marker: Path, sleep_s: float, code: int = 0) -> list[str]:
    """A wrapped command that dies by the signals it gets (no Python traceback)."""
    src = ("import signal, sys, time; signal.signal(signal.SIGINT, signal.SIG_DFL); "
           f"open({str(marker)!r}, 'w').close(); time.sleep({sleep_s}); sys.exit({code})")
    return [PY, "-c", src, tag]


@pytest.fixture
def env(tmp_path):
    ledger = tmp_path / "ledger" / "runs.sqlite"
    led = Ledger.open_for_writing(ledger)
    for run_id in EARLIER:
        led.add(sample_record(run_id))
    work = tmp_path / "work"
    work.mkdir()
    return {"ledger": ledger, "work": work, "tmp": tmp_path,
            "env": {**os.environ, "PLANNER_LEDGER": str(ledger), "PYTHONPATH": str(ROOT),
                    "PLANNER_CACHE_DIR": str(tmp_path / "cache"),
                    "PLANNER_CALIBRATION": str(tmp_path / "cal.json")}}


def _planner(env, args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([PY, "-m", "planner", *args], cwd=env["work"], env=env["env"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)


def _finish(proc: subprocess.Popen, tag: str | None = None) -> list[str]:
    proc.wait(timeout=40)  # not communicate(): an orphan would hold stderr open
    if tag:  # the wrapped command does not outlive planner
        try:
            _wait(lambda: not _procs_with(tag), 3, f"the wrapped command ({tag}) to be gone")
        except AssertionError:
            for pid in _procs_with(tag):
                os.kill(pid, signal.SIGKILL)
            raise
    return proc.stderr.read().decode().strip().splitlines()


def _ledger_ids(env) -> list[str]:
    return [r["id"] for r in Ledger(env["ledger"]).runs()]  # it still opens


def _no_temporaries(*dirs: Path) -> None:
    for d in dirs:
        assert [p.name for p in d.iterdir() if p.name.endswith(".tmp")] == []


def _expect_code(proc, sig: int, handled_code: int) -> None:
    if sig == signal.SIGKILL:
        assert proc.returncode == -signal.SIGKILL
    else:
        assert proc.returncode == handled_code


# --- planner measure ---------------------------------------------------------------------

@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: s.name)
def test_signal_during_meter_set_up(env, sig):
    pytest.importorskip("codecarbon")  # its set-up takes 1-5 s: the window to hit
    tag, marker = f"planner-fault-{uuid.uuid4().hex}", env["tmp"] / "ran"
    proc = _planner(env, ["measure", "--meter", "codecarbon", "--", *_child(tag, marker, 30)])
    _wait(lambda: _catches_sigterm(proc.pid), what="planner's signal handlers")
    proc.send_signal(sig)
    lines = _finish(proc, tag)
    _expect_code(proc, sig, 128 + sig)
    assert not marker.exists()  # the command never started
    if sig != signal.SIGKILL:
        assert len(lines) == 1 and f"interrupted by {sig.name} before the command" in lines[0]
    assert _ledger_ids(env) == EARLIER
    _no_temporaries(env["work"], env["ledger"].parent)


@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: s.name)
def test_signal_while_the_command_runs(env, sig):
    tag, marker = f"planner-fault-{uuid.uuid4().hex}", env["tmp"] / "ran"
    out = env["work"] / "report.json"
    out.write_text("the user's previous report\n")
    proc = _planner(env, ["measure", "--meter", "cpu-time", "--format", "json", "-o", str(out),
                          "--", *_child(tag, marker, 30)])
    _wait(marker.exists, what="the wrapped command")
    _wait(lambda: _procs_with(tag, proc.pid), what="the wrapped command's process")
    proc.send_signal(sig)
    lines = _finish(proc, tag)  # SIGKILL: the kernel kills the command with planner
    _expect_code(proc, sig, 128 + sig)
    ids = _ledger_ids(env)
    if sig == signal.SIGKILL:
        assert ids == EARLIER and out.read_text() == "the user's previous report\n"
    else:
        assert ids[:2] == EARLIER and len(ids) == 3
        rec = Ledger(env["ledger"]).get(ids[2])
        assert rec["interrupted_by"] == sig.name and rec["complete"] is False
        assert rec["exit_code"] == 128 + sig
        assert json.loads(out.read_text())["id"] == ids[2]
        assert len(lines) == 1 and "(incomplete) written to" in lines[0]
    _no_temporaries(env["work"], env["ledger"].parent)


@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: s.name)
def test_signal_during_the_final_write(env, sig):
    """The command has ended (exit 7); planner waits for the ledger, which the test holds."""
    tag, marker = f"planner-fault-{uuid.uuid4().hex}", env["tmp"] / "ran"
    proc = _planner(env, ["measure", "--meter", "cpu-time", "--",
                          *_child(tag, marker, 0.3, code=7)])
    _wait(marker.exists, what="the wrapped command")
    locker = sqlite3.connect(env["ledger"], isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")
    try:
        _wait(lambda: not _procs_with(tag, proc.pid), what="the wrapped command to end")
        time.sleep(0.3)  # planner is now waiting for the lock
        assert proc.poll() is None
        proc.send_signal(sig)
        lines = _finish(proc)
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    _expect_code(proc, sig, 7)  # the command's own code: it ran to its end
    assert _ledger_ids(env) == EARLIER
    fallbacks = list(env["work"].glob("planner-run-*.json"))
    if sig == signal.SIGKILL:
        assert fallbacks == []
    else:  # what was measured is kept, and said where
        (fallback,) = fallbacks
        assert json.loads(fallback.read_text())["exit_code"] == 7
        assert "interrupted while waiting" in lines[-1] and str(fallback) in lines[-1]
        assert "Traceback" not in "\n".join(lines)
    _no_temporaries(env["work"], env["ledger"].parent)


# --- planner run --report ----------------------------------------------------------------

def _old_report(d: Path) -> tuple[Path, Path]:
    html, md = d / "out.html", d / "out.md"
    html.write_text("OLD HTML\n")
    md.write_text(f"OLD MD\n\n{MARK}\n")
    return html, md


@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: s.name)
def test_signal_during_run_report(env, sig):
    html, md = _old_report(env["work"])
    proc = _planner(env, ["run", "quickstart", "--report", str(html)])
    _wait(lambda: _catches_sigterm(proc.pid), what="planner's signal handlers")
    time.sleep(0.2)
    proc.send_signal(sig)
    lines = _finish(proc)
    if proc.returncode == 0:  # finished first (slow signal delivery): both new
        assert "<!DOCTYPE html>" in html.read_text() and MARK in md.read_text()
        return
    _expect_code(proc, sig, 128 + sig)
    pair = (html.read_text(), md.read_text())
    assert pair == ("OLD HTML\n", f"OLD MD\n\n{MARK}\n")  # both old: never one of each
    if sig != signal.SIGKILL:
        assert len(lines) == 1 and f"interrupted by {sig.name}" in lines[0]
        _no_temporaries(env["work"])


def test_run_report_writes_the_pair_and_cleans_leftovers(env):
    html, md = _old_report(env["work"])
    leftover = env["work"] / ".out.html.999999999.k1ll3d00.tmp"  # from a killed earlier run
    leftover.write_text("<!DOCTYPE html> half")
    proc = _planner(env, ["run", "quickstart", "--report", str(html)])
    lines = _finish(proc)
    assert proc.returncode == 0, lines
    assert html.read_text().startswith("<!DOCTYPE html>") and html.read_text().rstrip().endswith(
        "</html>")
    assert md.read_text().rstrip().endswith(MARK)
    _no_temporaries(env["work"])


def test_run_report_never_replaces_a_markdown_file_it_did_not_write(runner, tmp_path):
    html, md = tmp_path / "README.html", tmp_path / "README.md"
    md.write_text("# my project\n")
    result = runner.invoke(cli, ["run", "quickstart", "--report", str(html)])
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "planner did not write" in lines[0] and "--report-md" in lines[0]
    assert md.read_text() == "# my project\n" and not html.exists()
    result = runner.invoke(cli, ["run", "quickstart", "--report", str(html), "--report-md",
                                 str(tmp_path / "r.md")])
    assert result.exit_code == 0, result.stderr
    assert md.read_text() == "# my project\n" and html.exists()
    assert (tmp_path / "r.md").read_text().startswith("# ")
