"""The codecarbon meter on this machine: a short CPU workload gives energy > 0, and each
component says how it was obtained, the same way in the result, the JSON, the table and the
ledger. Where RAPL cannot be read (most VMs and containers), CPU energy must be an estimate."""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import planner
from planner.catalog.regions import grid_factor
from planner.measurement.ledger import Ledger

pytest.importorskip("codecarbon")


def rapl_readable() -> bool:
    """True when some RAPL package energy counter can be read (what codecarbon checks)."""
    for path in glob.glob("/sys/class/powercap/intel-rapl*/energy_uj"):
        try:
            Path(path).read_text()
            return True
        except OSError:
            continue
    return False


def burn(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        sum(i * i for i in range(10_000))


def test_cpu_workload_in_process(tmp_path):
    ledger = tmp_path / "runs.sqlite"
    with planner.measure(label="burn", region="FR", ledger=ledger, meter="codecarbon",
                         interval_s=0.5) as m:
        burn(1.5)
    r = m.result
    assert r.complete and r.exit_code is None and r.duration_s >= 1.5
    assert r.energy.cpu_kwh > 0 and r.energy.ram_kwh > 0 and r.energy.gpu_kwh is not None
    cpu, ram = r.energy.methods["cpu"], r.energy.methods["ram"]
    assert cpu.kind == ("measured" if rapl_readable() else "estimated")
    if cpu.kind == "estimated":
        assert "not a measurement" in cpu.detail and "TDP" in cpu.detail
    assert ram.kind == "estimated" and "RAM model" in ram.detail
    assert r.energy.avg_power_w["cpu"] > 0
    assert r.energy.meter.startswith("codecarbon ")
    assert r.versions["codecarbon"] is not None
    assert r.carbon.grid_g_co2e_per_kwh == grid_factor("FR").g_co2e_per_kwh
    assert r.carbon.kg_co2e == pytest.approx(r.energy.kwh * r.carbon.grid_g_co2e_per_kwh / 1e3)
    # codecarbon's own figure uses the same French grid (OWID) and PUE 1.0 here.
    assert r.carbon.codecarbon_kg_co2e == pytest.approx(r.carbon.kg_co2e, rel=0.02)
    (stored,) = Ledger(ledger).runs()
    assert stored["energy"]["methods"]["cpu"] == {"kind": cpu.kind, "detail": cpu.detail}


def test_cli_labels_the_method_everywhere(tmp_path):
    out, ledger = tmp_path / "run.json", tmp_path / "runs.sqlite"
    child = "sum(i*i for i in range(3*10**6))"
    cmd = [sys.executable, "-m", "planner", "measure", "--region", "FR", "--interval", "0.5",
           "--ledger", str(ledger)]
    table = subprocess.run([*cmd, "--", sys.executable, "-c", child], capture_output=True,
                           text=True, timeout=60, cwd=Path(__file__).parent.parent, check=False)
    assert table.returncode == 0, table.stderr
    assert table.stdout == ""
    kind = "measured" if rapl_readable() else "estimated"
    assert f"cpu: {kind}: codecarbon" in table.stderr
    assert "ram: estimated: codecarbon RAM model, not a measurement" in table.stderr
    done = subprocess.run([*cmd, "--format", "json", "--output", str(out), "--",
                           sys.executable, "-c", child], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""}, check=False)
    assert done.returncode == 0, done.stderr
    data = json.loads(out.read_text())
    assert data["energy"]["methods"]["cpu"]["kind"] == kind and data["energy"]["cpu_kwh"] > 0
    assert data["energy"]["methods"]["gpu"]["kind"] in ("none", "measured")
    assert [r["energy"]["methods"]["cpu"]["kind"] for r in Ledger(ledger).runs()] == [kind] * 2
