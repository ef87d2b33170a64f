"""Helpers for the measure tests: a fake NVML backend and complete run records."""

from __future__ import annotations

import time

from planner.measurement.gpu import GpuDevice
from planner.measurement.results import (
    CarbonReport,
    CostReport,
    EnergyReport,
    Method,
    RunRecord,
)


class FakeGpuBackend:
    """``GpuBackend`` with constant power per GPU; ``counter`` GPUs also have an energy counter.

    The counter integrates the same constant power over real (monotonic) time, like NVML's
    total-energy counter, so counter and power readings agree.
    """

    def __init__(self, watts: list[float], counter: list[bool], clock=time.monotonic):
        self.watts, self.counter, self.clock = watts, counter, clock
        self.t0 = clock()
        self.closed = False

    def devices(self) -> list[GpuDevice]:
        return [GpuDevice(i, f"GPU-{i:04d}aaaa-bbbb", "Fake H100") for i in range(len(self.watts))]

    def power_w(self, index: int) -> float | None:
        return self.watts[index]

    def energy_j(self, index: int) -> float | None:
        if not self.counter[index]:
            return None
        return 1000.0 + self.watts[index] * (self.clock() - self.t0)

    def close(self) -> None:
        self.closed = True


def sample_record(run_id: str, label: str | None = "test", kwh: float = 0.5,
                  cost: float | None = 2.0, complete: bool = True) -> dict:
    """A complete ``RunRecord.to_dict()`` with round numbers (kWh, kg CO2e = kWh x 0.4)."""
    est = Method("estimated", "test constant")
    energy = EnergyReport(kwh, kwh, kwh / 2, 0.0, kwh / 2, 1.0,
                          {"cpu": est, "gpu": Method("none", "no GPU"), "ram": est},
                          {"cpu": 10.0, "gpu": None, "ram": 10.0, "total": 20.0},
                          {"cpu": 12.0, "gpu": None, "ram": 10.0}, (), "test")
    carbon = CarbonReport(kwh * 0.4, 400.0, "test grid", "DEU", "Germany", 1.0, "test pue",
                          "location-based", None)
    cost_report = CostReport(cost, 2.0 if cost is not None else None, 1, 1.0, None, "test",
                             None if cost is not None else "no price")
    return RunRecord(
        id=run_id, label=label, command=("python", "-c", "pass"),
        command_line="python -c pass", cwd="/tmp", host="test-host",
        started_at=f"2026-01-01T00:00:{len(run_id) % 60:02d}.000+00:00",
        ended_at="2026-01-01T01:00:00.000+00:00", duration_s=3600.0,
        exit_code=0 if complete else 130, signal=None,
        interrupted_by=None if complete else "SIGINT", complete=complete, error=None,
        energy=energy, carbon=carbon, cost=cost_report, extrapolation=None,
        versions={"planner": "test", "codecarbon": None, "python": "3"},
    ).to_dict()
