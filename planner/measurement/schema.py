"""The run ledger's SQLite schema and its migrations; the version lives in PRAGMA user_version.

Version 1 kept one row per run with totals only. Version 2 (current) adds the host, the
per-component energy, the method labels, PUE and grid, completion, extrapolation and the full
JSON record. Migrations run in order inside one write transaction, so a ledger from any older
version is upgraded in place and two processes opening it at once migrate it once.
"""

from __future__ import annotations

import json
import sqlite3

CURRENT_VERSION = 3

V1_TABLE = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    label TEXT,
    command TEXT NOT NULL,
    started_at TEXT NOT NULL,
    ended_at TEXT,
    exit_code INTEGER,
    energy_kwh REAL,
    kg_co2e REAL,
    cost_usd REAL
)"""

# Columns added by version 2, with their SQL types.
V2_COLUMNS = (
    ("host", "TEXT"), ("cwd", "TEXT"), ("duration_s", "REAL"), ("signal", "TEXT"),
    ("interrupted_by", "TEXT"), ("complete", "INTEGER"), ("error", "TEXT"),
    ("it_kwh", "REAL"), ("cpu_kwh", "REAL"), ("gpu_kwh", "REAL"), ("ram_kwh", "REAL"),
    ("pue", "REAL"), ("region", "TEXT"), ("grid_g_co2e_per_kwh", "REAL"),
    ("device_hours", "REAL"), ("methods_json", "TEXT"), ("extrapolation_json", "TEXT"),
    ("record_json", "TEXT"), ("schema_version", "INTEGER"),
)

V1_METHODS = json.dumps({c: {"kind": "unknown",
                             "detail": "recorded by ledger schema v1, which kept no method"}
                         for c in ("cpu", "gpu", "ram")})


def _to_v1(db: sqlite3.Connection) -> None:
    db.execute(V1_TABLE)


def _to_v2(db: sqlite3.Connection) -> None:
    have = {row[1] for row in db.execute("PRAGMA table_info(runs)")}
    for name, sql_type in V2_COLUMNS:
        if name not in have:
            db.execute(f"ALTER TABLE runs ADD COLUMN {name} {sql_type}")
    # v1 rows: completion was not recorded; exit 0 is the best evidence there is.
    db.execute("UPDATE runs SET complete = (exit_code = 0), methods_json = ?, "
               "schema_version = 1 WHERE schema_version IS NULL", (V1_METHODS,))
    db.execute("CREATE INDEX IF NOT EXISTS runs_label ON runs(label)")
    db.execute("CREATE INDEX IF NOT EXISTS runs_started ON runs(started_at)")


# Columns added by version 3: the job a run belongs to (planner/measurement/job.py).
V3_COLUMNS = (("job_id", "TEXT"), ("job_node", "TEXT"), ("job_rank", "INTEGER"),
              ("meters_node", "INTEGER"))


def _to_v3(db: sqlite3.Connection) -> None:
    have = {row[1] for row in db.execute("PRAGMA table_info(runs)")}
    for name, sql_type in V3_COLUMNS:
        if name not in have:
            db.execute(f"ALTER TABLE runs ADD COLUMN {name} {sql_type}")
    db.execute("CREATE INDEX IF NOT EXISTS runs_job ON runs(job_id)")


MIGRATIONS = {1: _to_v1, 2: _to_v2, 3: _to_v3}


def migrate(db: sqlite3.Connection) -> int:
    """Bring the open database (inside a write transaction) to CURRENT_VERSION; old version."""
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version > CURRENT_VERSION:
        raise RuntimeError(f"schema version {version} is newer than this planner's "
                           f"({CURRENT_VERSION}); upgrade planner")
    for target in range(version + 1, CURRENT_VERSION + 1):
        MIGRATIONS[target](db)
    if version != CURRENT_VERSION:
        db.execute(f"PRAGMA user_version = {CURRENT_VERSION}")
    return version
