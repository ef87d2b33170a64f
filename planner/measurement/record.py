"""Assemble a ``RunRecord`` from the meters' readings, the run's outcome and the context.

Carbon = facility kWh x grid intensity, with facility kWh = metered kWh x PUE: the same
arithmetic and the same grid data as ``planner estimate`` (docs/formulas.md §6.1-6.2).
Cost = devices x duration in hours x USD per device-hour (§7.1).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from planner.measurement.context import MeasureOptions, RunContext
from planner.measurement.readings import HostReading
from planner.measurement.gpu import gpu_component
from planner.measurement.results import (
    COMPONENTS,
    CarbonReport,
    Component,
    CostReport,
    EnergyReport,
    GpuEnergy,
    Method,
)

SECONDS_PER_HOUR = 3600.0


@dataclass(frozen=True)
class GpuSide:
    """The GPU picture: NVML readings for the visible GPUs, or why there are none."""

    readings: tuple[GpuEnergy, ...] | None  # None: NVML did not run
    visible: int  # GPUs visible to the command (NVML)
    note: str  # why NVML did not run or nothing was visible
    attribution: str | None = None  # which GPUs were counted as the command's, and why


def gpu_part(host: HostReading, side: GpuSide) -> tuple[Component, int]:
    """The GPU component and the GPU count: NVML first, then the host meter's own figure."""
    if side.readings:
        return gpu_component(side.readings, side.attribution), side.visible
    if side.readings is None and host.gpu is not None:
        return host.gpu, host.gpu_count
    return Component(0.0, None, None, Method("none", side.note)), 0


def energy_report(host: HostReading, gpu: Component, gpus: Sequence[GpuEnergy],
                  pue: float, meter: str) -> EnergyReport:
    """Per-component and total energy in kWh; total over the components that have a value."""
    parts = {"cpu": host.cpu, "gpu": gpu, "ram": host.ram}
    known = [c.kwh for c in parts.values() if c.kwh is not None]
    it_kwh = sum(known) if known else None
    avg = {k: c.avg_power_w for k, c in parts.items()}
    avg["total"] = sum(v for v in avg.values() if v is not None) if known else None
    peak = {k: c.peak_power_w for k, c in parts.items()}
    return EnergyReport(
        kwh=None if it_kwh is None else it_kwh * pue, it_kwh=it_kwh,
        cpu_kwh=host.cpu.kwh, gpu_kwh=gpu.kwh, ram_kwh=host.ram.kwh, pue=pue,
        methods={k: parts[k].method for k in COMPONENTS}, avg_power_w=avg, peak_power_w=peak,
        gpus=tuple(gpus), meter=meter, cpu_process_share=host.cpu_share)


def carbon_report(energy: EnergyReport, ctx: RunContext,
                  codecarbon_kg: float | None) -> CarbonReport:
    """Location-based operational carbon in kg CO2e from facility energy."""
    kg = None if energy.kwh is None else energy.kwh * ctx.grid_g_co2e_per_kwh / 1000.0
    return CarbonReport(
        kg_co2e=kg, grid_g_co2e_per_kwh=ctx.grid_g_co2e_per_kwh, grid_source=ctx.grid_source,
        region=ctx.grid.region, location=ctx.grid.location, pue=ctx.pue,
        pue_source=ctx.pue_source, basis="location-based", codecarbon_kg_co2e=codecarbon_kg)


def cost_report(o: MeasureOptions, ctx: RunContext, gpu_count: int,
                duration_s: float) -> CostReport:
    """Device-hours x price; total None with the reason when either is unknown."""
    devices = o.devices if o.devices is not None else gpu_count
    hw = ctx.hardware.name if ctx.hardware else None
    hours = devices * duration_s / SECONDS_PER_HOUR if devices else None
    note = None
    if ctx.usd_per_device_hour is None:
        note = "no price: give --hardware NAME (with --price-tier) or --price-per-hour"
    elif not devices:
        note = ("no GPU visible to count devices: give --devices N "
                "(1 when the price is for the whole machine)")
    total = None if note else hours * ctx.usd_per_device_hour
    return CostReport(total, ctx.usd_per_device_hour, devices, hours, hw, ctx.price_source,
                      note)
