"""Jobs, not only processes: job/node/rank detection, one meter per node, aggregation without
double counting, missing nodes, and ``planner runs merge`` under concurrent writers.

Multi-node is played on this machine by several ``planner measure`` processes whose
environment says which SLURM / torchrun rank and node they are; some are killed at random
points (fixed seed), and the job's totals are checked against the sum of the records' parts.
"""

from __future__ import annotations

import copy
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from planner.cli import cli
from planner.errors import SpecError
from planner.measurement.job import detect_job
from planner.measurement.jobs import summarize_job
from tests.measure_support import sample_record

ROOT = Path(__file__).resolve().parent.parent


# --- detection ------------------------------------------------------------------------------

def test_slurm_job():
    env = {"SLURM_JOB_ID": "77", "SLURM_PROCID": "5", "SLURM_LOCALID": "1",
           "SLURM_NODEID": "2", "SLURM_NTASKS": "8", "SLURM_JOB_NUM_NODES": "4"}
    j = detect_job(env)
    assert (j.id, j.scheduler, j.node, j.rank, j.local_rank) == ("77", "slurm", "2", 5, 1)
    assert (j.world_size, j.num_nodes, j.meters_node) == (8, 4, False)
    assert j.source == ("SLURM_JOB_ID, SLURM_PROCID, SLURM_LOCALID, SLURM_NODEID, "
                        "SLURM_NTASKS, SLURM_JOB_NUM_NODES")


def test_torchrun_rank_inside_slurm_takes_torchruns_ranks_and_slurms_job():
    env = {"SLURM_JOB_ID": "77", "SLURM_PROCID": "1", "TORCHELASTIC_RUN_ID": "abc",
           "RANK": "9", "LOCAL_RANK": "0", "GROUP_RANK": "1", "WORLD_SIZE": "16",
           "LOCAL_WORLD_SIZE": "8"}
    j = detect_job(env)
    assert (j.id, j.scheduler, j.rank, j.local_rank, j.meters_node) == ("77", "slurm", 9, 0, True)
    assert j.node == "1" and j.num_nodes == 2  # 16 ranks / 8 per node


def test_torchrun_alone_and_mpi():
    j = detect_job({"TORCHELASTIC_RUN_ID": "r1", "RANK": "3", "LOCAL_RANK": "3",
                    "WORLD_SIZE": "4", "LOCAL_WORLD_SIZE": "4"})
    assert (j.id, j.scheduler, j.num_nodes, j.meters_node) == ("r1", "torchelastic", 1, False)
    m = detect_job({"PMIX_NAMESPACE": "prterun-h-123@1", "OMPI_COMM_WORLD_RANK": "2",
                    "OMPI_COMM_WORLD_LOCAL_RANK": "0", "OMPI_COMM_WORLD_SIZE": "4",
                    "OMPI_COMM_WORLD_LOCAL_SIZE": "2"})
    assert (m.scheduler, m.rank, m.local_rank, m.num_nodes, m.meters_node) == \
        ("mpi", 2, 0, 2, True)
    assert m.node == os.uname().nodename  # no node index: the host name


def test_explicit_job_and_no_job():
    assert detect_job({"LOCAL_RANK": "1"}) is None  # a launcher's rank but no job id
    j = detect_job({"LOCAL_RANK": "1"}, explicit="sweep-7")
    assert (j.id, j.scheduler, j.local_rank, j.meters_node) == ("sweep-7", "explicit", 1, False)
    with pytest.raises(SpecError, match="SLURM_PROCID='x'"):
        detect_job({"SLURM_JOB_ID": "1", "SLURM_PROCID": "x"})
    with pytest.raises(SpecError, match="--job"):
        detect_job({}, explicit=" ")


# --- aggregation by hand ---------------------------------------------------------------------

def _rec(rid, node, rank, local, meters, start, end, host_kwh=0.0, gpus=(), nodes=3, world=6):
    """A record of job J: host_kwh split cpu/ram, GPUs as (uuid, kWh), window in seconds."""
    r = sample_record(rid, kwh=1.0)
    gpu_total = sum(k for _, k in gpus)
    r["energy"].update(cpu_kwh=host_kwh / 2, ram_kwh=host_kwh / 2, gpu_kwh=gpu_total,
                       it_kwh=host_kwh + gpu_total, kwh=host_kwh + gpu_total,
                       gpus=[{"index": i, "uuid": u, "model": "Fake", "kwh": k,
                              "avg_power_w": None, "peak_power_w": None,
                              "method": {"kind": "measured", "detail": "test"}}
                             for i, (u, k) in enumerate(gpus)])
    r["started_at"] = f"2026-01-01T00:{start // 60:02d}:{start % 60:02d}+00:00"
    r["ended_at"] = f"2026-01-01T00:{end // 60:02d}:{end % 60:02d}+00:00"
    r["duration_s"] = float(end - start)
    r["cost"]["total_usd"] = 1.0 if meters else None
    r["job"] = {"id": "J", "scheduler": "slurm", "node": node, "rank": rank,
                "local_rank": local, "world_size": world, "num_nodes": nodes,
                "meters_node": meters, "source": "test"}
    return r


def test_job_totals_count_host_per_node_and_gpu_per_device_once():
    records = [
        # node 0: local rank 0 metered host 0.5 and GPUs A, B (1.0 each); rank 1 also metered
        # by mistake in the same window (host 0.4, GPU A 0.9): counted once, the larger.
        _rec("a0", "0", 0, 0, True, 0, 100, 0.5, (("GPU-A", 1.0), ("GPU-B", 1.0))),
        _rec("a1", "0", 1, 1, True, 5, 95, 0.4, (("GPU-A", 0.9),)),
        # node 1: a crash and a restart, windows apart: both attempts count (0.2 + 0.3);
        # its rank 3 left only a rank record.
        _rec("b0", "1", 2, 0, True, 0, 40, 0.2),
        _rec("b1", "1", 2, 0, True, 60, 100, 0.3),
        _rec("b2", "1", 3, 1, False, 0, 100),
        # node 2 never reported (expected: 3 nodes); ranks 4 and 5 missing.
    ]
    records.append(copy.deepcopy(records[0]))  # the same record merged twice: once
    s = summarize_job("J", records)
    # it_kwh = node 0 (0.5 + 1.0 + 1.0) + node 1 (0.2 + 0.3) = 3.0; PUE 1, 400 g/kWh.
    assert s.it_kwh == pytest.approx(3.0) and s.kwh == pytest.approx(3.0)
    assert s.kg_co2e == pytest.approx(1.2)
    assert s.cost_usd == pytest.approx(1.0 + 2.0)  # node 0 once, node 1 per attempt
    n0, n1 = s.nodes
    assert (n0.host_kwh, n0.gpu_kwh, n0.gpu_devices, n0.attempts) == \
        (pytest.approx(0.5), pytest.approx(2.0), 2, 1)
    assert (n1.host_kwh, n1.attempts, n1.ranks) == (pytest.approx(0.5), 2, (2, 3))
    assert s.missing_nodes == ("2",) and s.missing_ranks == (4, 5)
    assert s.records == 5 and not s.complete
    assert s.it_kwh == pytest.approx(sum(n.it_kwh for n in s.nodes))


def test_a_node_with_only_rank_records_is_missing():
    s = summarize_job("J", [_rec("a0", "0", 0, 0, True, 0, 10, 0.1, nodes=2, world=2),
                            _rec("c1", "1", 1, 1, False, 0, 10, nodes=2, world=2)])
    assert s.missing_nodes == ("1",)
    assert any("node 1: no metering record" in n for n in s.notes)
    assert s.it_kwh == pytest.approx(0.1)


# --- several planner measure processes posing as ranks and nodes -----------------------------

def _env(tmp_path, node: int, local: int, job: str = "4242") -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SLURM_", "TORCHELASTIC", "OMPI_", "PMIX_"))
           and k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "GROUP_RANK")}
    env.update(PYTHONPATH=str(ROOT), SLURM_JOB_ID=job, SLURM_NODEID=str(node),
               SLURM_LOCALID=str(local), SLURM_PROCID=str(node * 2 + local),
               SLURM_NTASKS="6", SLURM_JOB_NUM_NODES="3",
               PLANNER_CACHE_DIR=str(tmp_path / "cache"))
    return env


def _start(tmp_path, ledger: Path, node: int, local: int, seconds: float) -> subprocess.Popen:
    marker = tmp_path / f"started-{node}-{local}"
    child = (f"import pathlib, time; pathlib.Path({str(marker)!r}).touch(); "
             f"sum(i * i for i in range(200000)); time.sleep({seconds})")
    return subprocess.Popen(
        [sys.executable, "-m", "planner", "measure", "--meter", "cpu-time", "--ledger",
         str(ledger), "--", sys.executable, "-c", child],
        env=_env(tmp_path, node, local), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _records(ledger: Path) -> list[dict]:
    db = sqlite3.connect(ledger)
    try:
        return [json.loads(r[0]) for r in db.execute("SELECT record_json FROM runs")]
    finally:
        db.close()


def test_processes_posing_as_nodes_killed_at_random_then_merged(tmp_path, runner):
    rng = random.Random(16)
    shared = tmp_path / "shared.sqlite"  # nodes 0 and 1 write here; node 2 its own ledger
    per_node = tmp_path / "node2.sqlite"
    ledger = {0: shared, 1: shared, 2: per_node}
    procs = {(n, l): _start(tmp_path, ledger[n], n, l, rng.uniform(0.6, 1.5))
             for n in range(3) for l in range(2)}
    # Node 2's metering process dies by SIGKILL at a random moment (no record: the node is
    # missing); node 1's local rank 1 gets SIGTERM (recorded, incomplete); node 0's local
    # rank 0 is SIGKILLed and restarted (its second attempt is a record of its own).
    # Each command has started (its marker exists) before any signal: a signal before that
    # ends planner with nothing run, which test_faults.py covers.
    deadline = time.monotonic() + 60
    while not all((tmp_path / f"started-{n}-{l}").exists() for n, l in procs):
        assert time.monotonic() < deadline, "the measured commands did not start"
        time.sleep(0.02)
    time.sleep(rng.uniform(0.0, 0.3))
    procs[(2, 0)].send_signal(signal.SIGKILL)
    procs[(0, 0)].send_signal(signal.SIGKILL)
    time.sleep(rng.uniform(0.0, 0.2))
    procs[(1, 1)].send_signal(signal.SIGTERM)
    for p in procs.values():
        p.wait(timeout=60)
    restart = _start(tmp_path, shared, 0, 0, 0.2)
    # A merge while a writer is still running is safe: it copies what is committed.
    merged = tmp_path / "merged.sqlite"
    r = runner.invoke(cli, ["runs", "merge", str(shared), "--ledger", str(merged)])
    assert r.exit_code == 0, r.output
    assert restart.wait(timeout=60) == 0, restart.stderr.read().decode()
    for src in (shared, per_node, shared):  # merging again adds nothing twice
        r = runner.invoke(cli, ["runs", "merge", str(src), "--ledger", str(merged)])
        assert r.exit_code == 0, r.output
    assert "0 run(s) added" in r.stderr

    records = _records(merged)
    assert sorted(r["id"] for r in records) == sorted(
        r["id"] for r in _records(shared) + _records(per_node))
    by_node_local = sorted((r["job"]["node"], r["job"]["local_rank"]) for r in records)
    # (0, 0) once (the killed first attempt left no record), its restart; (2, 0) lost.
    assert by_node_local == [("0", 0), ("0", 1), ("1", 0), ("1", 1), ("2", 1)]
    assert all(r["energy"]["it_kwh"] is None for r in records if not r["job"]["meters_node"])
    terminated = next(r for r in records if r["job"]["node"] == "1" and
                      r["job"]["local_rank"] == 1)
    assert not terminated["complete"] and terminated["interrupted_by"] == "SIGTERM"

    out = runner.invoke(cli, ["runs", "summary", "--job", "4242", "--ledger", str(merged),
                              "--format", "json"])
    assert out.exit_code == 0, out.output
    s = json.loads(out.stdout)
    metering = [r for r in records if r["job"]["meters_node"]]
    assert s["it_kwh"] == pytest.approx(sum(r["energy"]["it_kwh"] for r in metering),
                                        rel=1e-12)
    assert s["kg_co2e"] == pytest.approx(sum(r["carbon"]["kg_co2e"] for r in metering),
                                         rel=1e-12)
    assert s["missing_nodes"] == ["2"] and s["missing_ranks"] == [4]
    assert [n["node"] for n in s["nodes"]] == ["0", "1", "2"]
    table = runner.invoke(cli, ["runs", "summary", "--job", "4242", "--ledger", str(merged)])
    assert "MISSING node record(s): 2" in table.stdout
    shown = runner.invoke(cli, ["runs", "show", "--job", "4242", "--ledger", str(merged)])
    assert shown.exit_code == 0
    assert all(r["id"] in shown.stdout for r in records)


def test_runs_job_commands_errors(tmp_path, runner):
    led = tmp_path / "l.sqlite"
    r = runner.invoke(cli, ["runs", "summary", "--job", "nope", "--ledger", str(led)])
    assert r.exit_code == 1 and "no records of job 'nope'" in r.stderr
    r = runner.invoke(cli, ["runs", "show", "--ledger", str(led)])
    assert r.exit_code == 2 and "--job ID" in r.stderr
    r = runner.invoke(cli, ["runs", "merge", str(tmp_path / "missing.sqlite"), "--ledger",
                            str(led)])
    assert r.exit_code == 1 and "no run ledger at" in r.stderr


def test_explicit_job_on_the_command_line(tmp_path, runner, monkeypatch):
    for k in list(os.environ):
        if k.startswith(("SLURM_", "TORCHELASTIC", "OMPI_", "PMIX_")) or k in ("RANK",
                                                                             "LOCAL_RANK"):
            monkeypatch.delenv(k)
    led = tmp_path / "l.sqlite"
    r = runner.invoke(cli, ["measure", "--meter", "cpu-time", "--job", "sweep-1", "--ledger",
                            str(led), "--", "true"])
    assert r.exit_code == 0, r.stderr
    assert "sweep-1 (explicit): node " in r.stderr and "meters this node" in r.stderr
    s = runner.invoke(cli, ["runs", "summary", "--job", "sweep-1", "--ledger", str(led),
                            "--format", "json"])
    data = json.loads(s.stdout)
    assert data["records"] == 1 and data["complete"] and data["missing_nodes"] == []


def _with_x(rec, measured=1e6, target=1e9, hours=2.0, devices=8):
    rec["cost"].update(device_hours=hours, devices=devices)
    rec["extrapolation"] = {"unit": "tokens", "measured": measured, "target": target,
                            "scale": target / measured, "inputs": None}
    return rec


def test_job_extrapolation_scales_the_whole_job():
    recs = [_with_x(_rec("a0", "0", 0, 0, True, 0, 100, 0.5, nodes=2, world=2)),
            _with_x(_rec("b0", "1", 1, 0, True, 0, 120, 0.7, nodes=2, world=2))]
    s = summarize_job("J", recs)
    x = s.extrapolation
    assert x.scale == 1000 and x.planner_estimate is None  # no --model/--hardware given
    # wall clock: the longest node (120 s) x 1000; energy (0.5 + 0.7 kWh) x 1000;
    # device-hours (2 + 2) x 1000; cost ($1 + $1) x 1000
    assert x.projected.duration_s == pytest.approx(120_000)
    assert x.projected.energy_kwh == pytest.approx(1200)
    assert x.projected.device_hours == pytest.approx(4000)
    assert x.projected.cost_usd == pytest.approx(2000)
    recs[1]["extrapolation"]["target"] = 5e9
    s = summarize_job("J", recs)
    assert s.extrapolation is None and any("not all given the same" in n for n in s.notes)


def _measure_two_nodes(tmp_path, led, job: str, *flags: str) -> None:
    """`planner measure` once per node of a 2-node SLURM job, 8 devices each."""
    for node in (0, 1):
        env = _env(tmp_path, node, 0, job=job)
        env.update(SLURM_NTASKS="2", SLURM_JOB_NUM_NODES="2", SLURM_PROCID=str(node))
        r = subprocess.run([sys.executable, "-m", "planner", "measure", "--meter", "cpu-time",
                            "--ledger", str(led), "--devices", "8", "--model", "llama3-8b",
                            "--hardware", "h100-sxm", *flags, "--", "true"], env=env,
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr


def test_job_extrapolation_beside_the_plan_for_all_its_devices(tmp_path, runner):
    led = tmp_path / "l.sqlite"
    _measure_two_nodes(tmp_path, led, "x2", "--tokens", "50M", "--extrapolate-to", "2T")
    s = json.loads(runner.invoke(cli, ["runs", "summary", "--job", "x2", "--ledger", str(led),
                                       "--format", "json"]).stdout)
    est = s["extrapolation"]["planner_estimate"]
    assert est["available"] and est["devices"] == 16  # the job's 2 x 8, not one node's 8
    assert s["extrapolation"]["projected"]["energy_kwh"] == pytest.approx(s["kwh"] * 40_000)
    text = runner.invoke(cli, ["runs", "summary", "--job", "x2", "--ledger", str(led)]).stdout
    assert "planner estimate: llama3-8b on 16 x h100-sxm" in text


def test_job_extrapolation_in_steps_takes_the_recorded_training_flags(tmp_path, runner):
    # Steps become tokens with the recorded --seq-len and --global-batch, and the recorded
    # layout reaches the job's estimate (for all 16 devices): the same as `planner estimate`.
    led = tmp_path / "l.sqlite"
    layout = ["--tp", "8", "--pp", "1", "--cp", "1", "--zero", "1", "--micro-batch", "1",
              "--recompute", "full"]
    _measure_two_nodes(tmp_path, led, "x3", "--steps", "10", "--extrapolate-to", "1000",
                       "--seq-len", "4096", "--global-batch", "64", *layout)
    s = json.loads(runner.invoke(cli, ["runs", "summary", "--job", "x3", "--ledger", str(led),
                                       "--format", "json"]).stdout)
    est = s["extrapolation"]["planner_estimate"]
    assert est["available"] and est["devices"] == 16, est
    direct = json.loads(runner.invoke(cli, [
        "estimate", "-m", "llama3-8b", "-H", "h100-sxm", "-n", "16", "--tokens",
        str(1000 * 4096 * 64), "--seq-len", "4096", "--global-batch", "64", *layout,
        "--format", "json"]).stdout)
    assert est["device_hours"] == pytest.approx(direct["time"]["device_hours"])
    assert est["mfu"] == pytest.approx(direct["throughput"]["mfu"])
