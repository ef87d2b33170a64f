"""What a measurement needs besides the meters: where it runs (grid, PUE) and what it costs.

``MeasureOptions`` holds the user's inputs; ``resolve_context`` turns them into a
``RunContext`` with every value's source, raising PlannerError for bad input before anything
runs (unknown region, hardware or model, a price tier the profile lacks, inconsistent flags,
--model without --extrapolate-to).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from planner.catalog.regions import GridFactor, country_iso3, grid_factor, world_average
from planner.errors import SpecError

if TYPE_CHECKING:  # pydantic loads only with --hardware (catalog.load_hardware)
    from planner.specs import HardwareProfile

NO_PROVIDER_PUE_SOURCE = (
    "no cloud provider in --region, so no facility overhead is added to the energy at the "
    "meters (codecarbon's default); set --pue for your data centre")


@dataclass(frozen=True)
class MeasureOptions:
    """Inputs of one measurement. Units: W, s, USD per device-hour, g CO2e/kWh."""

    label: str | None = None
    region: str | None = None
    grid_g_co2e_per_kwh: float | None = None
    pue: float | None = None
    hardware: str | None = None
    profiles_dirs: tuple[str, ...] = ()
    price_tier: str | None = None
    price_per_hour: float | None = None
    devices: int | None = None
    model: str | None = None
    tokens: float | None = None  # tokens processed by the measured run
    steps: float | None = None  # or optimizer steps of the measured run
    extrapolate_to: float | None = None  # tokens (or steps) of the full run
    interval_s: float = 1.0  # sampling interval of the meters
    meter: str = "auto"  # auto | host | codecarbon | cpu-time
    redetect: bool = False  # detect the host's hardware again instead of using the cache
    job: str | None = None  # --job ID; else the launcher's (planner/measurement/job.py)
    grid_hourly: str | None = None  # hourly g CO2e/kWh CSV (planner/measurement/grid_live.py)
    grid_live: str | None = None  # "electricitymaps" (token in $ELECTRICITYMAPS_TOKEN)
    grid_zone: str | None = None  # the provider's zone, default the --region country
    # how the run trains (`planner measure --seq-len ... --tp ...`; click names), recorded for
    # `planner calibration add`; None when not given
    training: dict | None = None


@dataclass(frozen=True)
class RunContext:
    """Resolved grid intensity, PUE, hardware and price, each with its source."""

    grid: GridFactor
    grid_g_co2e_per_kwh: float
    grid_source: str
    pue: float
    pue_source: str
    country_iso3: str | None  # for codecarbon's own figure
    hardware: HardwareProfile | None
    usd_per_device_hour: float | None
    price_source: str | None


def _positive(name: str, value: float | None) -> None:
    if value is not None and not (math.isfinite(value) and value > 0):
        raise SpecError(f"{name} must be a positive number, got {value}")


def check_options(o: MeasureOptions) -> None:
    """SpecError for inconsistent or out-of-range options."""
    if o.tokens is not None and o.steps is not None:
        raise SpecError("give --tokens or --steps for the measured run, not both")
    if o.extrapolate_to is not None and o.tokens is None and o.steps is None:
        raise SpecError("--extrapolate-to needs --tokens (or --steps) of the measured run")
    if o.model and o.extrapolate_to is None and o.training is None:
        raise SpecError("--model is used for the planner estimate beside an extrapolation "
                        "(add --extrapolate-to N, with --tokens) or recorded with the run's "
                        "training flags (--seq-len, --global-batch, --tp, ...) for `planner "
                        "calibration add`; add one, or drop --model")
    if o.grid_g_co2e_per_kwh is not None and (o.grid_hourly or o.grid_live):
        raise SpecError("give --grid (one figure) or --grid-hourly/--grid-live, not both")
    if o.price_tier and not o.hardware:
        raise SpecError("--price-tier needs --hardware (or give --price-per-hour)")
    if o.pue is not None and not 1.0 <= o.pue <= 3.0:
        raise SpecError(f"--pue must be between 1 and 3, got {o.pue}")
    if o.devices is not None and o.devices < 0:
        raise SpecError(f"--devices must be 0 or more, got {o.devices}")
    for name, value in (("--tokens", o.tokens), ("--steps", o.steps),
                        ("--extrapolate-to", o.extrapolate_to), ("--interval", o.interval_s),
                        ("--price-per-hour", o.price_per_hour)):
        _positive(name, value)


def _grid(o: MeasureOptions) -> tuple[GridFactor, float, str]:
    grid = grid_factor(o.region) if o.region else world_average()
    if o.grid_g_co2e_per_kwh is not None:
        return grid, o.grid_g_co2e_per_kwh, "set by user (--grid)"
    source = grid.intensity_source
    if not o.region:
        source += " (no --region given)"
    return grid, grid.g_co2e_per_kwh, source


def _pue(o: MeasureOptions, grid: GridFactor) -> tuple[float, str]:
    if o.pue is not None:
        return o.pue, "set by user (--pue)"
    if o.region and ":" in grid.region:
        return grid.pue, grid.pue_source
    return 1.0, NO_PROVIDER_PUE_SOURCE


def _price(o: MeasureOptions) -> tuple[HardwareProfile | None, float | None, str | None]:
    if not o.hardware:
        return None, o.price_per_hour, ("set by user (--price-per-hour)"
                                        if o.price_per_hour is not None else None)
    from planner.catalog.catalog import load_hardware
    from planner.planning.outcome_chain import price_quote
    from planner.specs import Assumptions

    hw = load_hardware(o.hardware, o.profiles_dirs)
    if o.price_per_hour is not None:
        return hw, o.price_per_hour, "set by user (--price-per-hour)"
    if hw is None:
        return None, None, None
    usd, tier, _provider, source = price_quote(hw, Assumptions(price_tier=o.price_tier))
    return hw, usd, f"{hw.name} {tier}: {source}"


def resolve_context(o: MeasureOptions) -> RunContext:
    """Check the options and resolve region, PUE, hardware and price (PlannerError if bad)."""
    check_options(o)
    if o.model:  # an unknown model fails here, before the command runs
        from planner.catalog.catalog import load_model
        load_model(o.model)
    grid, g, g_source = _grid(o)
    pue, pue_source = _pue(o, grid)
    hw, usd, price_source = _price(o)
    return RunContext(grid, g, g_source, pue, pue_source,
                      country_iso3(grid) if o.region else None, hw, usd, price_source)
