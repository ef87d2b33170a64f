"""`planner measure` and `planner runs` through CliRunner and real subprocesses.

Most runs use ``--meter cpu-time`` (no codecarbon set-up, ~0.1 s); test_measure_codecarbon.py
covers the codecarbon meter.
"""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from measure_support import sample_record

from planner.catalog.catalog import load_hardware
from planner.cli import cli
from planner.measurement.ledger import Ledger

PY = sys.executable
FAST = ["measure", "--meter", "cpu-time"]


@pytest.fixture(autouse=True)
def ledger_env(tmp_path, monkeypatch):
    """Every test gets its own ledger via $PLANNER_LEDGER."""
    path = tmp_path / "ledger" / "runs.sqlite"
    monkeypatch.setenv("PLANNER_LEDGER", str(path))
    return path


def records(path: Path) -> list[dict]:
    return Ledger(path).runs()


def planner_proc(args: list[str], **kw) -> subprocess.Popen:
    """`python -m planner ARGS` as a real process (for fds and signals)."""
    return subprocess.Popen([PY, "-m", "planner", *args], cwd=Path(__file__).parent.parent, **kw)


@pytest.mark.parametrize("code", [0, 3])
def test_exit_code_passes_through(runner, ledger_env, code):
    result = runner.invoke(cli, [*FAST, "--label", "x", "--", PY, "-c",
                                 f"import sys; sys.exit({code})"])
    assert result.exit_code == code, result.stderr
    assert result.stdout == ""  # planner's report goes to stderr
    (rec,) = records(ledger_env)
    assert rec["exit_code"] == code and rec["complete"] is (code == 0)
    assert rec["label"] == "x" and rec["command"][0] == PY


def test_signal_killed_child_gives_128_plus_n(runner, ledger_env):
    result = runner.invoke(cli, [*FAST, "--", PY, "-c",
                                 "import os, signal; os.kill(os.getpid(), signal.SIGTERM)"])
    assert result.exit_code == 128 + signal.SIGTERM
    (rec,) = records(ledger_env)
    assert rec["signal"] == "SIGTERM" and rec["complete"] is False
    assert "killed by SIGTERM" in result.stderr


def test_child_stdout_is_byte_for_byte(ledger_env):
    payload = bytes(range(256)) * 100
    proc = planner_proc([*FAST, "--", PY, "-c",
                         "import sys; sys.stdout.buffer.write(bytes(range(256))*100)"],
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert out == payload
    assert b"energy" in err and b"cpu" in err  # the report went to stderr
    assert len(records(ledger_env)) == 1


def test_ctrl_c_is_forwarded_and_the_run_recorded(ledger_env):
    child = "import time; print('ready', flush=True); time.sleep(30)"
    proc = planner_proc([*FAST, "--label", "interrupted", "--", PY, "-c", child],
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout.readline() == b"ready\n"
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)  # to planner only: it must forward it
    _, err = proc.communicate(timeout=20)
    assert time.monotonic() - t0 < 10
    assert proc.returncode == 128 + signal.SIGINT, err
    (rec,) = records(ledger_env)
    assert rec["complete"] is False and rec["interrupted_by"] == "SIGINT"
    assert rec["signal"] == "SIGINT" and rec["exit_code"] == 130
    assert rec["duration_s"] < 10 and b"INCOMPLETE" in err


def test_json_output_file(runner, ledger_env, tmp_path):
    out = tmp_path / "report.json"
    result = runner.invoke(cli, [*FAST, "--region", "DE", "--pue", "1.2", "--format", "json",
                                 "--output", str(out), "--", PY, "-c",
                                 "sum(i*i for i in range(10**6))"])
    assert result.exit_code == 0, result.stderr
    assert result.stderr.count("\n") == 1 and "written to" in result.stderr
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".report")] == []
    data = json.loads(out.read_text())
    for key in ("id", "command", "exit_code", "complete", "duration_s"):
        assert key in data
    e, c = data["energy"], data["carbon"]
    assert set(e["methods"]) == {"cpu", "gpu", "ram"}
    assert e["methods"]["cpu"]["kind"] == "estimated" and e["cpu_kwh"] > 0
    assert e["ram_kwh"] is None and e["methods"]["ram"]["kind"] == "none"
    assert e["kwh"] == pytest.approx(e["it_kwh"] * 1.2)
    assert c["grid_g_co2e_per_kwh"] == pytest.approx(381, abs=1) and c["pue"] == 1.2
    assert c["kg_co2e"] == pytest.approx(e["kwh"] * c["grid_g_co2e_per_kwh"] / 1000)
    assert data["cost"]["total_usd"] is None and "--hardware" in data["cost"]["note"]
    assert data["extrapolation"] is None
    assert records(ledger_env)[0]["id"] == data["id"]


def test_cost_from_hardware_price(runner, ledger_env, tmp_path):
    out = tmp_path / "r.json"
    result = runner.invoke(cli, [*FAST, "--hardware", "h100-sxm", "--devices", "8",
                                 "--format", "json", "-o", str(out), "--", PY, "-c", "pass"])
    assert result.exit_code == 0, result.stderr
    data = json.loads(out.read_text())
    price = load_hardware("h100-sxm").price("on_demand").usd_per_device_hour
    cost = data["cost"]
    assert cost["usd_per_device_hour"] == price and cost["devices"] == 8
    assert cost["total_usd"] == pytest.approx(8 * data["duration_s"] / 3600 * price)


def test_extrapolation_beside_planner_estimate(runner, tmp_path):
    out = tmp_path / "x.json"
    args = [*FAST, "--tokens", "50M", "--extrapolate-to", "2T", "--model", "llama3-8b",
            "--hardware", "h100-sxm", "--devices", "8", "--region", "aws:us-east-1"]
    result = runner.invoke(cli, [*args, "--format", "json", "-o", str(out), "--", PY, "-c",
                                 "pass"])
    assert result.exit_code == 0, result.stderr
    data = json.loads(out.read_text())
    x = data["extrapolation"]
    assert x["unit"] == "tokens" and x["scale"] == pytest.approx(40_000)
    assert x["projected"]["energy_kwh"] == pytest.approx(data["energy"]["kwh"] * 40_000)
    assert x["projected"]["cost_usd"] == pytest.approx(data["cost"]["total_usd"] * 40_000)
    est = x["planner_estimate"]
    assert est["available"] is True and est["devices"] == 8 and est["model"] == "llama3-8b"
    assert est["cost_usd"] > 0 and est["energy_kwh"] > 0 and "constant throughput" in \
        x["assumption"]
    table = runner.invoke(cli, [*args, "--", PY, "-c", "pass"]).stderr
    assert "projected from this run" in table and "planner estimate" in table


def test_extrapolation_says_why_there_is_no_estimate(runner, tmp_path):
    out = tmp_path / "x.json"
    result = runner.invoke(cli, [*FAST, "--steps", "10", "--extrapolate-to", "1000", "--model",
                                 "llama3-8b", "--hardware", "h100-sxm", "--format", "json",
                                 "-o", str(out), "--", PY, "-c", "pass"])
    assert result.exit_code == 0, result.stderr
    est = json.loads(out.read_text())["extrapolation"]["planner_estimate"]
    assert est["available"] is False and "--steps are turned into tokens only with" in \
        est["reason"]


def test_the_estimate_beside_takes_the_runs_training_flags(runner, tmp_path):
    # With --seq-len and --global-batch, steps become tokens (10 -> 1,000 steps of 4096 x 512
    # tokens each); the layout flags reach the estimate as `planner estimate` would take them.
    def estimate(*flags):
        out = tmp_path / "x.json"
        result = runner.invoke(cli, [*FAST, "--steps", "10", "--extrapolate-to", "1000", "-m",
                                     "llama3-8b", "--hardware", "h100-sxm", "--devices", "8",
                                     "--seq-len", "4096", "--global-batch", "512", *flags,
                                     "--format", "json", "-o", str(out), "--", PY, "-c", "0"])
        assert result.exit_code == 0, result.stderr
        return json.loads(out.read_text())["extrapolation"]["planner_estimate"]

    searched, fixed = estimate(), estimate("--tp", "8", "--pp", "1", "--cp", "1", "--zero", "3",
                                           "--micro-batch", "1", "--recompute", "full")
    assert searched["available"] and fixed["available"], (searched, fixed)
    direct = json.loads(runner.invoke(cli, [
        "estimate", "-m", "llama3-8b", "-H", "h100-sxm", "-n", "8", "--tokens",
        str(1000 * 4096 * 512), "--seq-len", "4096", "--global-batch", "512", "--tp", "8",
        "--pp", "1", "--cp", "1", "--zero", "3", "--micro-batch", "1", "--recompute", "full",
        "--format", "json"]).stdout)
    assert fixed["mfu"] == pytest.approx(direct["throughput"]["mfu"])
    assert fixed["device_hours"] == pytest.approx(direct["time"]["device_hours"])
    assert fixed["mfu"] < searched["mfu"]  # tp 8 with full recompute is not the best layout


def _one_error_line(result, code: int) -> str:
    assert result.exit_code == code, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def test_bad_input_is_one_line(runner, ledger_env, tmp_path):
    assert "no command to measure" in _one_error_line(runner.invoke(cli, ["measure", "--"]), 2)
    line = _one_error_line(runner.invoke(cli, [*FAST, "--", "no-such-command-xyz", "a"]), 127)
    assert "command not found: no-such-command-xyz" in line
    assert not ledger_env.exists()  # nothing half-written
    line = _one_error_line(runner.invoke(cli, [*FAST, "--region", "Frnace", "--", "true"]), 1)
    assert "unknown region 'Frnace'; did you mean" in line
    marker = tmp_path / "child-ran"
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    line = _one_error_line(runner.invoke(cli, [
        *FAST, "--ledger", str(blocker / "runs.sqlite"), "--", PY, "-c",
        f"open({str(marker)!r}, 'w')"]), 1)
    assert "cannot write the run ledger" in line and not marker.exists()
    line = _one_error_line(runner.invoke(cli, [*FAST, "--extrapolate-to", "2T", "--", "true"]), 1)
    assert "needs --tokens" in line
    script = tmp_path / "not-executable.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    line = _one_error_line(runner.invoke(cli, [*FAST, "--", str(script)]), 126)
    assert "not an executable file" in line
    line = _one_error_line(runner.invoke(cli, [*FAST, "-o", str(tmp_path / "no" / "r.json"),
                                               "--", "true"]), 2)
    assert "--output" in line
    assert not ledger_env.exists()


def test_runs_commands(runner, ledger_env):
    led = Ledger.open_for_writing(ledger_env)
    led.add(sample_record("aaaa00000001", label="sweep", kwh=1.0, cost=2.0))
    led.add(sample_record("bbbb00000002", label="sweep", kwh=3.0, cost=None))
    assert runner.invoke(cli, [*FAST, "--label", "real", "--", PY, "-c", "pass"]).exit_code == 0

    listed = json.loads(runner.invoke(cli, ["runs", "list", "--format", "json"]).stdout)
    assert [r["label"] for r in listed] == ["sweep", "sweep", "real"]
    assert listed[2]["methods"] == "cpu:estimated gpu:none ram:none"
    table = runner.invoke(cli, ["runs", "list"]).stdout
    assert "aaaa00000001" in table and "n/a" in table
    assert "| id |" in runner.invoke(cli, ["runs", "list", "--format", "markdown"]).stdout

    shown = runner.invoke(cli, ["runs", "show", "bbbb"])
    assert shown.exit_code == 0 and "bbbb00000002" in shown.stdout and "estimated" in shown.stdout
    assert json.loads(runner.invoke(cli, ["runs", "show", "aaaa", "--format", "json"])
                      .stdout)["energy"]["kwh"] == 1.0
    _one_error_line(runner.invoke(cli, ["runs", "show", "zzzz"]), 1)

    exported = json.loads(runner.invoke(cli, ["runs", "export"]).stdout)
    assert len(exported) == 3 and exported[0]["energy"]["methods"]["cpu"]["kind"] == "estimated"
    rows = list(csv.DictReader(io.StringIO(
        runner.invoke(cli, ["runs", "export", "--format", "csv"]).stdout)))
    assert len(rows) == 3 and rows[0]["energy.kwh"] == "1.0"
    assert "energy.methods.cpu.kind" in rows[0]

    summary = {r["label"]: r for r in json.loads(
        runner.invoke(cli, ["runs", "summary", "--format", "json"]).stdout)}
    assert summary["sweep"]["runs"] == 2 and summary["sweep"]["energy_kwh"] == 4.0
    assert summary["sweep"]["cost_usd"] == 2.0 and summary["sweep"]["runs_without_cost"] == 1
    assert summary["real"]["cost_usd"] is None
    assert "sweep" in runner.invoke(cli, ["runs", "summary"]).stdout


def test_runs_on_an_empty_ledger(runner):
    result = runner.invoke(cli, ["runs", "list"])
    assert result.exit_code == 0 and "no runs recorded" in result.stderr


def test_help_lists_the_new_commands(runner):
    top = runner.invoke(cli, ["--help"]).stdout
    assert "measure" in top and "runs" in top
    assert "--extrapolate-to" in runner.invoke(cli, ["measure", "--help"]).stdout
    assert os.environ["PLANNER_LEDGER"]


# --- data safety: the user's files and the run's record are never lost -----------------


def _marker_cmd(marker: Path, code: int = 0) -> list[str]:
    return [PY, "-c", f"import sys; open({str(marker)!r}, 'w'); sys.exit({code})"]


def _fallback_files(where: Path) -> list[Path]:
    return sorted(where.glob("planner-run-*.json"))


def test_output_is_never_the_ledger_or_an_sqlite_file(runner, ledger_env, tmp_path):
    led = Ledger.open_for_writing(ledger_env)
    led.add(sample_record("aaaa00000001"))
    marker = tmp_path / "ran"
    line = _one_error_line(runner.invoke(cli, [*FAST, "--ledger", str(ledger_env), "--output",
                                               str(ledger_env), "--", *_marker_cmd(marker)]),
                           2)
    assert "is the run ledger" in line and not marker.exists()
    other = tmp_path / "other.sqlite"  # any SQLite file, by its header, not its name
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.commit()
    before = other.read_bytes()
    line = _one_error_line(runner.invoke(cli, [*FAST, "-o", str(other), "--",
                                               *_marker_cmd(marker)]), 2)
    assert "SQLite database" in line and not marker.exists()
    assert other.read_bytes() == before
    assert [r["id"] for r in records(ledger_env)] == ["aaaa00000001"]


def test_output_and_ledger_are_checked_by_trying(runner, ledger_env, tmp_path):
    # root passes os.access on /proc, but nothing can be created there
    marker = tmp_path / "ran"
    line = _one_error_line(runner.invoke(cli, [*FAST, "-o", "/proc/planner-x.json", "--",
                                               *_marker_cmd(marker)]), 2)
    assert "--output" in line and "/proc" in line and not marker.exists()
    line = _one_error_line(runner.invoke(cli, [*FAST, "-o", "/dev/null", "--",
                                               *_marker_cmd(marker)]), 2)
    assert "not a regular file" in line and not marker.exists()
    line = _one_error_line(runner.invoke(cli, [*FAST, "--ledger", "/proc/planner-x.sqlite",
                                               "--", *_marker_cmd(marker)]), 1)
    assert "cannot write the run ledger" in line and not marker.exists()


def test_every_input_is_checked_before_the_command_runs(runner, ledger_env, tmp_path):
    marker = tmp_path / "ran"
    line = _one_error_line(runner.invoke(cli, [*FAST, "--model", "no-such-model", "--tokens",
                                               "1M", "--extrapolate-to", "1T", "--", *_marker_cmd(marker)]),
                           1)
    assert "unknown model 'no-such-model'" in line and not marker.exists()
    line = _one_error_line(runner.invoke(cli, [*FAST, "--model", "llama3-8b", "--",
                                               *_marker_cmd(marker)]), 1)
    assert "--model is used for the planner estimate" in line and not marker.exists()
    line = _one_error_line(runner.invoke(cli, [*FAST, "--hardware", "no-such-gpu", "--",
                                               *_marker_cmd(marker)]), 1)
    assert "no-such-gpu" in line and not marker.exists()
    assert not ledger_env.exists()


def test_ledger_replaced_by_a_directory_keeps_exit_code_and_record(runner, ledger_env,
                                                                    tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Ledger.open_for_writing(ledger_env)
    child = (f"import shutil, os, sys, glob; [os.remove(p) for p in glob.glob({str(ledger_env)!r}"
             f" + '*')]; os.mkdir({str(ledger_env)!r}); sys.exit(6)")
    result = runner.invoke(cli, [*FAST, "--", PY, "-c", child])
    assert result.exit_code == 6, result.stderr
    (fallback,) = _fallback_files(tmp_path)
    last = result.stderr.strip().splitlines()[-1]
    assert "cannot write the run ledger" in last and str(fallback) in last
    assert "Traceback" not in result.stderr
    data = json.loads(fallback.read_text())
    assert data["exit_code"] == 6 and data["energy"]["cpu_kwh"] is not None


def test_output_directory_deleted_during_the_run(runner, ledger_env, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    child = f"import shutil, sys; shutil.rmtree({str(out_dir)!r}); sys.exit(5)"
    result = runner.invoke(cli, [*FAST, "--format", "json", "-o", str(out_dir / "r.json"),
                                 "--", PY, "-c", child])
    assert result.exit_code == 5, result.stderr
    (fallback,) = _fallback_files(tmp_path)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(fallback) in lines[0] and "r.json" in lines[0]
    rec = json.loads(fallback.read_text())
    assert [r["id"] for r in records(ledger_env)] == [rec["id"]]  # the ledger still has it


def test_locked_ledger_at_the_end_keeps_exit_code_and_record(runner, ledger_env, tmp_path,
                                                            monkeypatch):
    from planner.measurement import ledger as ledger_mod
    from planner.measurement.session import Session

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(ledger_mod, "BUSY_TIMEOUT_S", 0.5)
    led = Ledger.open_for_writing(ledger_env)
    led.add(sample_record("aaaa00000001"))
    locker = sqlite3.connect(ledger_env, isolation_level=None)
    start = Session.start

    def start_then_lock(self):
        start(self)
        locker.execute("BEGIN IMMEDIATE")  # another process holds the ledger to the end

    monkeypatch.setattr(Session, "start", start_then_lock)
    t0 = time.monotonic()
    result = runner.invoke(cli, [*FAST, "--", PY, "-c", "import sys; sys.exit(6)"])
    assert time.monotonic() - t0 < 10
    locker.execute("ROLLBACK")
    assert result.exit_code == 6, result.stderr
    (fallback,) = _fallback_files(tmp_path)
    assert "locked" in result.stderr.strip().splitlines()[-1]
    assert json.loads(fallback.read_text())["exit_code"] == 6
    assert [r["id"] for r in records(ledger_env)] == ["aaaa00000001"]
