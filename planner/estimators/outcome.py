"""Time, cost, energy and carbon from FLOPs (docs/formulas.md §4.1, §6, §7). Pure arithmetic."""

from __future__ import annotations

from planner.units import HOURS_PER_YEAR, SECONDS_PER_HOUR


def compute_seconds(
    hardware_flops: float, devices: int, peak_flops_per_s: float, efficiency: float
) -> float:
    """Seconds of pure training: executed FLOPs / (devices x peak x efficiency)."""
    return hardware_flops / (devices * peak_flops_per_s * efficiency)


def wall_clock_hours(compute_s: float, goodput: float) -> float:
    """Wall-clock hours including restarts and checkpoint stalls (goodput <= 1)."""
    return compute_s / goodput / SECONDS_PER_HOUR


def cost_usd(device_hours: float, usd_per_device_hour: float) -> float:
    """Rental cost: billed device-hours x price."""
    return device_hours * usd_per_device_hour


def device_power_w(tdp_w: float, power_fraction: float, host_w: float) -> float:
    """Average power per device slot before PUE: accelerator share of TDP + host share."""
    return tdp_w * power_fraction + host_w


def energy_kwh(device_hours: float, power_w: float, pue: float) -> tuple[float, float]:
    """(IT energy, facility energy) in kWh: device-hours x W / 1000, then x PUE."""
    it = device_hours * power_w / 1000.0
    return it, it * pue


def carbon_kg(facility_kwh: float, grid_g_co2e_per_kwh: float) -> float:
    """Operational kg CO2e: energy x location-based grid intensity."""
    return facility_kwh * grid_g_co2e_per_kwh / 1000.0


def embodied_kg(device_hours: float, kg_per_device: float, lifetime_years: float) -> float:
    """Manufacturing carbon amortised over the device lifetime (LLMCarbon, Faiz et al. 2024)."""
    return kg_per_device * device_hours / (lifetime_years * HOURS_PER_YEAR)
