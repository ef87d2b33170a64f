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
    assert est["available"] is False and "--steps cannot be turned into tokens" in est["reason"]


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
