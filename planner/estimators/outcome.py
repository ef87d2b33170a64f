"""Time, cost, energy and carbon from FLOPs (docs/formulas.md §4.1, §6, §7). Pure arithmetic."""

from __future__ import annotations

from planner.units import HOURS_PER_YEAR, SECONDS_PER_HOUR

GOODPUT_SOURCE = (
    "docs/formulas.md §7.2: Llama 3 405B had >90% effective training time on 16K H100s "
    "(Dubey et al. 2024 §3.3.4); a first-order restart/checkpoint model gives ~84%; "
    "small short jobs lose less"
)


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


GOODPUT_BY_SIZE = ((64, (0.90, 0.95, 0.98)), (1024, (0.85, 0.92, 0.96)),
                   (None, (0.80, 0.90, 0.95)))  # up to N devices -> (low, expected, high)


def default_goodput(devices):
    """(low, expected, high) goodput by cluster size (heuristic, docs/formulas.md §7.2); works on
    a device count or an array of them."""
    (n1, small), (n2, mid), (_, large) = GOODPUT_BY_SIZE
    if isinstance(devices, int):
        return small if devices <= n1 else mid if devices <= n2 else large
    return tuple(a + (b - a) * (devices > n1) + (c - b) * (devices > n2)
                 for a, b, c in zip(small, mid, large))
