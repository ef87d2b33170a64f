"""The run ledger: round trip, migration from schema v1, concurrent writers, bad paths."""

from __future__ import annotations

import json
import multiprocessing
import sqlite3

import pytest
from measure_support import sample_record

from planner.measurement.ledger import Ledger, LedgerError, default_ledger_path, ledger_path
from planner.measurement.schema import CURRENT_VERSION

# The schema as planner's first ledger wrote it, spelled out here (not imported) so the test
# keeps describing the old file even if schema.py changes.
V1_DDL = """CREATE TABLE runs (id TEXT PRIMARY KEY, label TEXT, command TEXT NOT NULL,
    started_at TEXT NOT NULL, ended_at TEXT, exit_code INTEGER, energy_kwh REAL,
    kg_co2e REAL, cost_usd REAL)"""


def test_round_trip_and_lookup(tmp_path):
    led = Ledger.open_for_writing(tmp_path / "sub" / "runs.sqlite")
    led.add(sample_record("abc123def456", label="a", kwh=1.0))
    led.add(sample_record("abd999000000", label="b", kwh=2.0, cost=None, complete=False))
    assert [r["id"] for r in led.runs()] == ["abc123def456", "abd999000000"]
    assert led.get("abc1")["energy"]["kwh"] == 1.0
    assert led.get("abd999000000")["interrupted_by"] == "SIGINT"
    with pytest.raises(LedgerError, match="ambiguous"):
        led.get("ab")
    with pytest.raises(LedgerError, match="no run 'zzz'"):
        led.get("zzz")
    assert [r["id"] for r in led.runs(label="b")] == ["abd999000000"]
    db = sqlite3.connect(led.path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == CURRENT_VERSION
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_summary_totals_by_label(tmp_path):
    led = Ledger.open_for_writing(tmp_path / "runs.sqlite")
    for i, (label, kwh, cost) in enumerate([("a", 1.0, 2.0), ("a", 3.0, None), ("b", 0.5, 1.0),
                                            (None, 0.25, 1.0)]):
        led.add(sample_record(f"run{i:09d}", label=label, kwh=kwh, cost=cost))
    rows = {r["label"]: r for r in led.summary()}
    assert rows["a"]["runs"] == 2 and rows["a"]["energy_kwh"] == pytest.approx(4.0)
    assert rows["a"]["kg_co2e"] == pytest.approx(1.6) and rows["a"]["cost_usd"] == 2.0
    assert rows["a"]["runs_without_cost"] == 1
    assert rows["b"]["duration_s"] == 3600.0 and rows[None]["energy_kwh"] == 0.25


def test_v1_ledger_is_migrated_not_broken(tmp_path):
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.execute(V1_DDL)
    db.execute("INSERT INTO runs VALUES ('old1', 'legacy', 'python train.py', "
               "'2025-01-01T00:00:00+00:00', '2025-01-01T01:00:00+00:00', 0, 1.5, 0.6, 3.0)")
    db.execute("INSERT INTO runs VALUES ('old2', NULL, './crash.sh', "
               "'2025-01-02T00:00:00+00:00', NULL, 1, 0.5, 0.2, NULL)")
    db.execute("PRAGMA user_version = 1")
    db.commit()
    db.close()

    led = Ledger(path)
    old = led.get("old1")  # reading migrates
    assert old["energy"]["kwh"] == 1.5 and old["carbon"]["kg_co2e"] == 0.6
    assert old["command_line"] == "python train.py" and old["complete"] is True
    assert old["energy"]["methods"]["cpu"]["kind"] == "unknown"
    assert led.get("old2")["complete"] is False
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == CURRENT_VERSION

    led = Ledger.open_for_writing(path)
    led.add(sample_record("new000000001", label="legacy", kwh=0.5))
    assert [r["id"] for r in led.runs()] == ["old1", "old2", "new000000001"]
    legacy = {r["label"]: r for r in led.summary()}["legacy"]
    assert legacy["runs"] == 2 and legacy["energy_kwh"] == pytest.approx(2.0)
    assert legacy["cost_usd"] == pytest.approx(5.0)


def test_newer_ledger_is_refused(tmp_path):
    path = tmp_path / "future.sqlite"
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version = 99")
    db.close()
    with pytest.raises(LedgerError, match="newer than this planner"):
        Ledger.open_for_writing(path)


def test_unwritable_ledger_path(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(LedgerError, match="cannot write the run ledger .*a-file is a file, not "
                                          "a directory .*--ledger PATH"):
        Ledger.open_for_writing(blocker / "sub" / "runs.sqlite")
    with pytest.raises(LedgerError, match="is a directory"):
        Ledger.open_for_writing(tmp_path)


def test_a_file_that_is_not_a_ledger(tmp_path):
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not an SQLite database" * 100)
    with pytest.raises(LedgerError, match="cannot write the run ledger"):
        Ledger.open_for_writing(junk)
    with pytest.raises(LedgerError, match="cannot read the run ledger"):
        Ledger(junk).runs()


@pytest.mark.parametrize("stored", ["{bad", "[1, 2]", '{"id": "other"}', "[" * 100_000])
def test_damaged_row_is_one_line_error_naming_the_ledger_and_run(runner, tmp_path, stored):
    from planner.cli import cli

    path = tmp_path / "runs.sqlite"
    led = Ledger.open_for_writing(path)
    led.add(sample_record("good00000000", kwh=1.0))
    led.add(sample_record("bad000000000", kwh=2.0))
    db = sqlite3.connect(path)
    db.execute("UPDATE runs SET record_json = ? WHERE id = 'bad000000000'", (stored,))
    db.commit()
    db.close()
    dest = tmp_path / "dest.sqlite"
    for argv in (["runs", "list"], ["runs", "export"], ["runs", "show", "bad0"],
                 ["runs", "summary", "--job", "j"], ["calibration", "add", "bad0"],
                 ["runs", "merge", str(path), "--ledger", str(dest)]):
        if "--ledger" not in argv:
            argv = argv + ["--ledger", str(path)]
        result = runner.invoke(cli, argv)
        lines = result.stderr.strip().splitlines()
        assert result.exit_code == 1 and len(lines) == 1, (argv, result.stderr)
        assert lines[0].startswith(f"error: run ledger {path}: run 'bad000000000' is damaged: "
                                   "its record_json is not valid"), lines
        assert "Traceback" not in result.stderr + result.stdout
    assert Ledger(dest).runs() == []  # a merge that meets a damaged run copies nothing


def test_missing_ledger_reads_as_empty(tmp_path):
    led = Ledger(tmp_path / "never.sqlite")
    assert led.runs() == [] and led.summary() == []
    assert not led.path.exists()


def test_ledger_path_resolution(monkeypatch, tmp_path):
    monkeypatch.delenv("PLANNER_LEDGER", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert default_ledger_path() == tmp_path / "xdg" / "planner" / "runs.sqlite"
    monkeypatch.delenv("XDG_DATA_HOME")
    assert str(default_ledger_path()).endswith(".local/share/planner/runs.sqlite")
    monkeypatch.setenv("PLANNER_LEDGER", str(tmp_path / "env.sqlite"))
    assert ledger_path() == tmp_path / "env.sqlite"
    assert ledger_path(tmp_path / "flag.sqlite") == tmp_path / "flag.sqlite"


def _writer(path: str, worker: int, count: int) -> None:
    led = Ledger.open_for_writing(__import__("pathlib").Path(path))
    for i in range(count):
        led.add(sample_record(f"w{worker}-{i:04d}", label=f"worker{worker}", kwh=0.001 * i))


def test_concurrent_writers_lose_nothing(tmp_path):
    path = tmp_path / "shared.sqlite"  # not created yet: the writers race to create it too
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(path), w, 25)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    records = Ledger(path).runs()
    assert len(records) == 100
    assert {r["id"] for r in records} == {f"w{w}-{i:04d}" for w in range(4) for i in range(25)}
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    for (raw,) in db.execute("SELECT record_json FROM runs"):
        json.loads(raw)
    totals = {r["label"]: r["energy_kwh"] for r in Ledger(path).summary()}
    assert totals == {f"worker{w}": pytest.approx(0.001 * sum(range(25))) for w in range(4)}
