"""Project a full run from a measured sample, assuming constant throughput. Pure arithmetic.

With ``measured`` units (tokens or steps) done in ``duration_s``, the full run of ``target``
units takes ``duration_s x target / measured`` and every extensive quantity (device-hours,
energy, carbon, cost) scales by the same factor. The sample's start-up (imports, data loading,
compilation) is scaled too, so a short sample over-estimates the full run.
"""

from __future__ import annotations

from dataclasses import dataclass

from planner.measurement.results import EstimateComparison, Extrapolation, Projection

SECONDS_PER_DAY = 86400.0
ASSUMPTION = (
    "constant throughput: the full run processes {unit} at the measured rate "
    "({rate:.4g} {unit}/s) on the same devices, region, PUE and price; the sample's start-up is "
    "scaled with it, so a short sample over-estimates")


@dataclass(frozen=True)
class Sample:
    """The measured run's totals. kWh, kg CO2e, USD; None where unknown."""

    duration_s: float
    device_hours: float | None
    energy_kwh: float | None  # facility (x PUE)
    it_kwh: float | None
    kg_co2e: float | None
    cost_usd: float | None


def _scaled(x: float | None, k: float) -> float | None:
    return None if x is None else x * k


def project(sample: Sample, scale: float) -> Projection:
    """Every extensive quantity of ``sample`` times ``scale``; time also in days."""
    duration = sample.duration_s * scale
    return Projection(
        duration_s=duration,
        wall_clock_days=duration / SECONDS_PER_DAY,
        device_hours=_scaled(sample.device_hours, scale),
        energy_kwh=_scaled(sample.energy_kwh, scale),
        it_kwh=_scaled(sample.it_kwh, scale),
        kg_co2e=_scaled(sample.kg_co2e, scale),
        cost_usd=_scaled(sample.cost_usd, scale),
    )


def extrapolate(sample: Sample, unit: str, measured: float, target: float,
                estimate: EstimateComparison | None = None) -> Extrapolation:
    """The full run of ``target`` units from a sample of ``measured`` units (both > 0)."""
    if measured <= 0 or target <= 0:
        raise ValueError(f"measured and target {unit} must be positive: {measured}, {target}")
    scale = target / measured
    rate = measured / sample.duration_s if sample.duration_s > 0 else float("inf")
    return Extrapolation(
        unit=unit, measured=measured, target=target, scale=scale, throughput_per_s=rate,
        assumption=ASSUMPTION.format(unit=unit, rate=rate),
        projected=project(sample, scale), planner_estimate=estimate,
    )
