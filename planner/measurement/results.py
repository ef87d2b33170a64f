"""Typed results of a measured run. ``RunRecord.to_dict()`` is the JSON contract.

Units: energy in kWh, power in W, time in s, carbon in kg CO2e, money in USD. A value that
was not measured or cannot be known is ``None`` (printed "n/a"), never 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from planner.measurement.job import JobInfo
from planner.results import Result

MethodKind = Literal["measured", "estimated", "none", "failed"]
COMPONENTS = ("cpu", "gpu", "ram")


@dataclass(frozen=True)
class Method(Result):
    """How one component's energy was obtained.

    ``measured``: a hardware energy counter or power sensor (RAPL, NVML, ...);
    ``estimated``: a model or constant (TDP x load, W per DIMM, CPU-time x W per thread);
    ``none``: the component is absent (no GPU visible); ``failed``: the meter gave nothing.
    """

    kind: MethodKind
    detail: str

    def label(self) -> str:
        """One-line label, e.g. 'estimated: codecarbon CPU-load model ...'."""
        return f"{self.kind}: {self.detail}"


@dataclass(frozen=True)
class Component(Result):
    """Energy of one component (cpu, gpu or ram) over the run, at the meter (before PUE)."""

    kwh: float | None
    avg_power_w: float | None
    peak_power_w: float | None
    method: Method


@dataclass(frozen=True)
class GpuEnergy(Result):
    """One GPU's energy from NVML over the run."""

    index: int  # NVML device index
    uuid: str
    model: str  # e.g. "NVIDIA H100 80GB HBM3"
    kwh: float | None
    avg_power_w: float | None
    peak_power_w: float | None
    method: Method


@dataclass(frozen=True)
class EnergyReport(Result):
    """Energy of the run: ``it_kwh`` at the meters, ``kwh`` = it_kwh x PUE (facility).

    The same convention as ``planner estimate``'s ``energy.kwh`` (facility) and ``it_kwh``.
    """

    kwh: float | None
    it_kwh: float | None
    cpu_kwh: float | None
    gpu_kwh: float | None
    ram_kwh: float | None
    pue: float
    methods: dict[str, Method]
    avg_power_w: dict[str, float | None]
    peak_power_w: dict[str, float | None]
    gpus: tuple[GpuEnergy, ...]
    meter: str  # e.g. "codecarbon 3.3.2 (machine-wide) + NVML"
    # The command's share (0..1) of the machine's busy CPU time: cpu_kwh x this is the
    # process-share estimate (cpu_kwh itself is machine-wide). None where not known.
    cpu_process_share: float | None = None


@dataclass(frozen=True)
class CarbonReport(Result):
    """Operational, location-based carbon: facility kWh x grid intensity."""

    kg_co2e: float | None
    grid_g_co2e_per_kwh: float
    grid_source: str
    region: str
    location: str
    pue: float
    pue_source: str
    basis: str  # "location-based"
    codecarbon_kg_co2e: float | None  # codecarbon's own figure (its grid data, PUE 1.0)


@dataclass(frozen=True)
class CostReport(Result):
    """Device-hours x price per device-hour; ``total_usd`` is None with ``note`` saying why."""

    total_usd: float | None
    usd_per_device_hour: float | None
    devices: int | None
    device_hours: float | None
    hardware: str | None
    price_source: str | None
    note: str | None


@dataclass(frozen=True)
class Projection(Result):
    """The full run projected from the measured sample at constant throughput."""

    duration_s: float
    wall_clock_days: float
    device_hours: float | None
    energy_kwh: float | None  # facility (x PUE)
    it_kwh: float | None
    kg_co2e: float | None
    cost_usd: float | None


@dataclass(frozen=True)
class EstimateComparison(Result):
    """What ``planner estimate`` predicts for the full run (expected case), or why it can't."""

    available: bool
    reason: str | None
    model: str | None
    hardware: str | None
    devices: int | None
    wall_clock_days: float | None
    device_hours: float | None
    energy_kwh: float | None  # facility
    kg_co2e: float | None
    cost_usd: float | None
    mfu: float | None


@dataclass(frozen=True)
class Extrapolation(Result):
    """A measured sample scaled to the full run, beside the planner's own estimate."""

    unit: str  # "tokens" or "steps"
    measured: float
    target: float
    scale: float  # target / measured
    throughput_per_s: float  # measured units per second of wall clock
    assumption: str
    projected: Projection
    planner_estimate: EstimateComparison | None
    # What the planner estimate was asked with (model, hardware, region, pue, grid, price),
    # so a job's records can be extrapolated together (jobs.py); None in older records.
    inputs: dict | None = None


@dataclass(frozen=True)
class RunRecord(Result):
    """One measured run: what ran, how it ended, and its energy, carbon and cost."""

    id: str
    label: str | None
    command: tuple[str, ...]
    command_line: str
    cwd: str
    host: str
    started_at: str  # ISO 8601, UTC
    ended_at: str
    duration_s: float
    exit_code: int | None  # None for a Python block (no process)
    signal: str | None  # the signal that killed the command, e.g. "SIGTERM"
    interrupted_by: str | None  # a signal planner received and forwarded, e.g. "SIGINT"
    complete: bool  # exited 0 and was not interrupted
    error: str | None
    energy: EnergyReport
    carbon: CarbonReport
    cost: CostReport
    extrapolation: Extrapolation | None
    versions: dict[str, str | None]
    job: JobInfo | None = None  # the job, node and rank (planner/measurement/job.py)
    # How the run trained, as given to `planner measure` (model, steps, seq_len, tp, zero, ...:
    # click names), for `planner calibration add`; None when not given.
    training: dict | None = None
