"""The run ledger: one SQLite file per user, one row per measured run.

Path: ``--ledger PATH``, else ``$PLANNER_LEDGER``, else ``$XDG_DATA_HOME/planner/runs.sqlite``
(``~/.local/share/planner/runs.sqlite``). WAL mode, a 30 s busy timeout, and every write in
a ``BEGIN IMMEDIATE`` transaction, so concurrent ``planner measure`` processes queue instead of
failing or losing records. Older ledgers are migrated in place (schema.py). ``add`` can be
told to stop waiting for a lock (planner measure does on SIGINT/SIGTERM/SIGHUP); a record it
cannot write is the caller's to keep (session.save_fallback).
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from planner.errors import PlannerError
from planner.fileio import check_writable
from planner.measurement import schema

LEDGER_ENV = "PLANNER_LEDGER"
BUSY_TIMEOUT_S = 30.0
SUMMARY_COLUMNS = ("id", "started_at", "label", "command", "exit_code", "complete",
                   "duration_s", "energy_kwh", "kg_co2e", "cost_usd", "methods_json")


class LedgerError(PlannerError):
    """The ledger cannot be opened, written or read, or a run id is not in it."""


def default_ledger_path() -> Path:
    """$XDG_DATA_HOME/planner/runs.sqlite, or ~/.local/share/planner/runs.sqlite."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "planner" / "runs.sqlite"


def ledger_path(explicit: str | os.PathLike | None = None) -> Path:
    """The ledger path: explicit, else $PLANNER_LEDGER, else the per-user default."""
    chosen = explicit or os.environ.get(LEDGER_ENV)
    return Path(chosen).expanduser() if chosen else default_ledger_path()


class Ledger:
    """A run ledger at ``path``; ``Ledger.open_for_writing`` checks it can be written."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def open_for_writing(cls, path: Path) -> Ledger:
        """Create (or migrate) the ledger and prove it is writable; LedgerError if not."""
        ledger = cls(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            blocker = next((p for p in path.parents if p.exists()), None)
            why = (f"{blocker} is a file, not a directory" if blocker and not blocker.is_dir()
                   else f"cannot create its directory ({e.strerror or e})")
            raise ledger._error(why) from None
        if path.is_dir():
            raise ledger._error("it is a directory")
        try:  # WAL mode creates -wal and -shm files beside the ledger: try creating one
            check_writable(path, "the run ledger")
        except PlannerError as e:
            raise ledger._error(str(e).split(": ", 1)[-1]) from None
        ledger._migrate()
        for p in (path, path.parent):
            if not os.access(p, os.W_OK):
                raise ledger._error(f"{p} is not writable")
        return ledger

    def _error(self, why: str) -> LedgerError:
        return LedgerError(f"cannot write the run ledger {self.path}: {why} "
                           f"(choose another with --ledger PATH or ${LEDGER_ENV})")

    def _connect(self, timeout_s: float | None = None) -> sqlite3.Connection:
        timeout_s = BUSY_TIMEOUT_S if timeout_s is None else timeout_s
        db = sqlite3.connect(str(self.path), timeout=timeout_s, isolation_level=None)
        try:
            db.execute(f"PRAGMA busy_timeout = {int(timeout_s * 1000)}")
            db.execute("PRAGMA journal_mode = WAL")
        except BaseException:
            db.close()
            raise
        return db

    @contextmanager
    def _write(self, timeout_s: float | None = None,
               locked: type[Exception] | None = None) -> Iterator[sqlite3.Connection]:
        """A BEGIN IMMEDIATE transaction; sqlite errors become LedgerError (or ``locked``
        when the ledger stayed locked for ``timeout_s``)."""
        def error(e: sqlite3.Error) -> Exception:
            if locked is not None and _is_locked(e):
                return locked(str(e))
            return self._error(str(e))

        try:
            db = self._connect(timeout_s)
        except sqlite3.Error as e:
            raise error(e) from None
        try:
            db.execute("BEGIN IMMEDIATE")
            yield db
            db.execute("COMMIT")
        except sqlite3.Error as e:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise error(e) from None
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        finally:
            db.close()

    def _transaction(self, work: Callable[[sqlite3.Connection], Any],
                     should_stop: Callable[[], bool] | None = None) -> Any:
        """Run ``work(db)`` in one write transaction, waiting up to BUSY_TIMEOUT_S for a lock
        in short slices (so signal handlers run meanwhile), and giving up as soon as
        ``should_stop()`` is True; LedgerError if the lock never comes."""
        deadline = time.monotonic() + BUSY_TIMEOUT_S
        while True:
            left = max(deadline - time.monotonic(), 0.01)
            try:
                with self._write(min(left, LOCK_SLICE_S), _Locked) as db:
                    return work(db)
            except _Locked:
                if time.monotonic() >= deadline:
                    raise self._error(f"another process kept it locked for "
                                      f"{BUSY_TIMEOUT_S:g} s") from None
                if should_stop is not None and should_stop():
                    raise self._error("interrupted while waiting for another process to "
                                      "release its lock") from None

    def _migrate(self) -> None:
        def work(db: sqlite3.Connection) -> None:
            try:
                schema.migrate(db)
            except RuntimeError as e:
                raise LedgerError(f"run ledger {self.path}: {e}") from None

        self._transaction(work)

    def add(self, record: dict[str, Any],
            should_stop: Callable[[], bool] | None = None) -> None:
        """Append one run (``RunRecord.to_dict()``) in its own transaction; waits for a lock
        as ``_transaction`` says (``should_stop``: give up early)."""
        row = _row(record)
        names = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        self._transaction(lambda db: db.execute(
            f"INSERT INTO runs ({names}) VALUES ({marks})", tuple(row.values())), should_stop)

    def merge_from(self, source: Path) -> dict[str, int]:
        """Copy every run of the ledger at ``source`` that this one lacks, in one transaction.

        A run is the same run when its id is (ids are random, 48 bits): merging a ledger twice,
        or two ledgers that share runs, adds each run once. Counts: added, already (same id,
        same record), conflicting (same id, another record: kept as it was here)."""
        src = Ledger(source)
        if not source.is_file():
            raise LedgerError(f"no run ledger at {source}")
        with src._read() as db:
            rows = [dict(r) for r in db.execute("SELECT * FROM runs ORDER BY rowid")]
        for row in rows:  # a corrupt run is refused before anything is copied
            _record(row, source)

        def work(db: sqlite3.Connection) -> dict[str, int]:
            have = {r[1] for r in db.execute("PRAGMA table_info(runs)")}
            counts = {"added": 0, "already": 0, "conflicting": 0}
            for row in rows:
                old = db.execute("SELECT record_json FROM runs WHERE id = ?",
                                 (row["id"],)).fetchone()
                if old is not None:
                    counts["already" if old[0] == row.get("record_json") else "conflicting"] += 1
                    continue
                cols = [c for c in row if c in have]
                db.execute(f"INSERT INTO runs ({', '.join(cols)}) VALUES "
                           f"({', '.join('?' for _ in cols)})", [row[c] for c in cols])
                counts["added"] += 1
            return counts

        return self._transaction(work)

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection | None]:
        if not self.path.exists():
            yield None
            return
        try:
            db = self._connect()
            version = db.execute("PRAGMA user_version").fetchone()[0]
        except sqlite3.Error as e:
            raise LedgerError(f"cannot read the run ledger {self.path}: {e}") from None
        try:
            if version != schema.CURRENT_VERSION:
                self._migrate()
            db.row_factory = sqlite3.Row
            yield db
        except sqlite3.Error as e:
            raise LedgerError(f"cannot read the run ledger {self.path}: {e}") from None
        finally:
            db.close()

    def runs(self, label: str | None = None, limit: int | None = None,
             job: str | None = None) -> list[dict[str, Any]]:
        """Full records, oldest first (optionally one label or job, the newest ``limit``)."""
        conds, args = [], []
        for column, value in (("label", label), ("job_id", job)):
            if value is not None:
                conds.append(f"{column} = ?")
                args.append(value)
        where = ("WHERE " + " AND ".join(conds)) if conds else ""
        sql = f"SELECT * FROM runs {where} ORDER BY started_at DESC, rowid DESC"
        if limit:
            sql += f" LIMIT {int(limit)}"
        with self._read() as db:
            rows = [] if db is None else db.execute(sql, args).fetchall()
        return [_record(r, self.path) for r in reversed(rows)]

    def get(self, run_id: str) -> dict[str, Any]:
        """One run by id or unique id prefix; LedgerError if none or ambiguous."""
        with self._read() as db:
            rows = [] if db is None else db.execute(
                "SELECT * FROM runs WHERE substr(id, 1, ?) = ?", (len(run_id), run_id),
            ).fetchall()
        if not rows:
            raise LedgerError(f"no run '{run_id}' in the ledger {self.path}; "
                              "see `planner runs list`")
        if len(rows) > 1:
            ids = ", ".join(sorted(r["id"] for r in rows)[:5])
            raise LedgerError(f"run id '{run_id}' is ambiguous: {ids}")
        return _record(rows[0], self.path)

    def summary(self) -> list[dict[str, Any]]:
        """Totals by label: runs, complete runs, seconds, kWh, kg CO2e, USD."""
        sql = ("SELECT label, COUNT(*) AS runs, SUM(complete) AS complete, "
               "SUM(duration_s) AS duration_s, SUM(energy_kwh) AS energy_kwh, "
               "SUM(kg_co2e) AS kg_co2e, SUM(cost_usd) AS cost_usd, "
               "SUM(cost_usd IS NULL) AS runs_without_cost "
               "FROM runs GROUP BY label ORDER BY label IS NULL, label")
        with self._read() as db:
            rows = [] if db is None else db.execute(sql).fetchall()
        return [dict(r) for r in rows]


class _Locked(Exception):
    """The ledger stayed locked for one wait (retried until BUSY_TIMEOUT_S)."""


LOCK_SLICE_S = 0.2


def _is_locked(e: sqlite3.Error) -> bool:
    text = str(e).lower()
    return "locked" in text or "busy" in text


def _row(rec: dict[str, Any]) -> dict[str, Any]:
    """Ledger columns of a record dict."""
    energy, carbon, cost = rec["energy"], rec["carbon"], rec["cost"]
    return {
        "id": rec["id"], "label": rec["label"], "command": rec["command_line"],
        "started_at": rec["started_at"], "ended_at": rec["ended_at"],
        "exit_code": rec["exit_code"], "energy_kwh": energy["kwh"],
        "kg_co2e": carbon["kg_co2e"], "cost_usd": cost["total_usd"], "host": rec["host"],
        "cwd": rec["cwd"], "duration_s": rec["duration_s"], "signal": rec["signal"],
        "interrupted_by": rec["interrupted_by"], "complete": int(rec["complete"]),
        "error": rec["error"], "it_kwh": energy["it_kwh"], "cpu_kwh": energy["cpu_kwh"],
        "gpu_kwh": energy["gpu_kwh"], "ram_kwh": energy["ram_kwh"], "pue": energy["pue"],
        "region": carbon["region"], "grid_g_co2e_per_kwh": carbon["grid_g_co2e_per_kwh"],
        "device_hours": cost["device_hours"], "methods_json": json.dumps(energy["methods"]),
        "extrapolation_json": json.dumps(rec["extrapolation"]),
        "record_json": json.dumps(rec), "schema_version": schema.CURRENT_VERSION,
        **_job_columns(rec.get("job")),
    }


def _job_columns(job: dict[str, Any] | None) -> dict[str, Any]:
    if not job:
        return {"job_id": None, "job_node": None, "job_rank": None, "meters_node": None}
    return {"job_id": job["id"], "job_node": job["node"], "job_rank": job["rank"],
            "meters_node": int(bool(job["meters_node"]))}


def _record(row: sqlite3.Row | dict[str, Any], path: Path) -> dict[str, Any]:
    """The stored record; rows migrated from schema v1 are rebuilt from their columns.
    LedgerError naming the ledger, the run and the column when the row does not hold a record
    (a hand-edited or damaged ledger)."""
    column = "record_json" if row["record_json"] else "methods_json"
    try:
        value = json.loads(row[column] or "{}")
        if column == "record_json" and (not isinstance(value, dict) or value.get("id") != row["id"]
                                        or any(not isinstance(value.get(k), dict)
                                               for k in ("energy", "carbon", "cost"))):
            raise ValueError("not a run record: a JSON object with the run's id, energy, "
                             "carbon and cost")
        if not isinstance(value, dict):
            raise ValueError("not a JSON object")
    except (ValueError, RecursionError) as e:  # json.JSONDecodeError is a ValueError
        why = "nested too deeply" if isinstance(e, RecursionError) else str(e)
        raise LedgerError(f"run ledger {path}: run '{row['id']}' is damaged: its {column} is "
                          f"not valid ({why}); delete that row or restore the ledger from a "
                          "backup") from None
    if column == "record_json":
        return value
    return {
        "id": row["id"], "label": row["label"], "command": None, "command_line": row["command"],
        "started_at": row["started_at"], "ended_at": row["ended_at"],
        "duration_s": row["duration_s"], "exit_code": row["exit_code"],
        "complete": bool(row["complete"]),
        "energy": {"kwh": row["energy_kwh"], "it_kwh": None, "cpu_kwh": None, "gpu_kwh": None,
                   "ram_kwh": None, "methods": value},
        "carbon": {"kg_co2e": row["kg_co2e"]}, "cost": {"total_usd": row["cost_usd"]},
        "extrapolation": None, "ledger_schema": row["schema_version"],
    }
