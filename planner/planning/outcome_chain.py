"""The outcome chain: goodput, price, power, PUE and grid resolved with their assumptions,
then FLOPs -> days -> device-hours -> USD -> kWh -> kg CO2e. `estimate` runs it per case on
numbers; the layout search, confidence planning and serving run the same functions. No I/O."""

from __future__ import annotations


from planner.catalog.regions import GridFactor
from planner.errors import SpecError
from planner.estimators import outcome as oc
from planner.estimators import power as pw
from planner.estimators.memory import MemoryDefaults
from planner.planning import reliability as rel
from planner.results import Assumption, frozen
from planner.specs import Assumptions, HardwareProfile
from planner.units import GIB, HOURS_PER_DAY


class Ledger:
    """Collects assumptions as they are resolved (user value or sourced default)."""

    def __init__(self, user: Assumptions):
        self.user, self.items = user, []

    def take(self, name: str, default, unit: str, source: str, user_value=None):
        value = getattr(self.user, name, None) if user_value is None else user_value
        chosen = default if value is None else value
        self.items.append(Assumption(
            name=name, value=chosen, unit=unit, defaulted=value is None,
            source=source if value is None else "set by user",
        ))
        return chosen


def goodput_cases(devices, user: Assumptions, ckpt_bytes: float) -> tuple:
    """(low, expected, high) goodput: the user's, else the failure model's for this many
    devices and this checkpoint (numbers or arrays of device counts)."""
    d = rel.model_goodput(devices, user, ckpt_bytes)
    given = (user.goodput_low, user.goodput_expected, user.goodput_high)
    g = tuple(d[i] if v is None else v for i, v in enumerate(given))
    if user.goodput_expected is not None:  # a given expected bounds the defaulted cases
        e = user.goodput_expected
        lo, hi = g[0], g[2]
        if user.goodput_low is None:
            lo = lo * (lo <= e) + e * (lo > e)
        if user.goodput_high is None:
            hi = hi * (hi >= e) + e * (hi < e)
        g = (lo, e, hi)
    if any(v is not None for v in given) and isinstance(devices, int) and \
            not g[0] <= g[1] <= g[2]:
        raise SpecError(f"--goodput: need low <= expected <= high, got {g[0]}, {g[1]}, {g[2]}")
    return g


def price_quote(hw: HardwareProfile, user: Assumptions) -> tuple[float, str, str, str]:
    """(USD per device-hour, tier, provider, source) from the user or the profile."""
    if user.price_usd_per_device_hour is not None:
        return user.price_usd_per_device_hour, "custom", "set by user", "set by user"
    tier = user.price_tier or "on_demand"
    quote = hw.price(tier)
    if quote is None:
        raise SpecError(f"{hw.name} has no '{tier}' price; available tiers: "
                        f"{', '.join(hw.price_tiers)} (or set --price-per-hour)")
    return (quote.usd_per_device_hour, tier, quote.provider,
            f"{quote.provider}, {quote.date} ({quote.confidence}): {quote.source}")


def device_power_w(hw: HardwareProfile, user: Assumptions) -> tuple[float, float]:
    """(accelerator, host) average W per device slot, before PUE: TDP x the measured fraction,
    and the host's nameplate share x its measured load (docs/assumptions.md, Power)."""
    frac = pw.ACCELERATOR_FRACTION if user.power_fraction is None else user.power_fraction
    host = pw.host_power_w(hw.host_power_w_per_device.value, pw.HOST_LOAD_FRACTION) \
        if user.host_power_w_per_device is None else user.host_power_w_per_device
    return pw.accelerator_power_w(hw.tdp_w.value, frac), host


@frozen
class OutcomeInputs:
    """Everything between executed FLOPs and days, dollars, kWh and kg, resolved once."""

    price_usd_per_device_hour: float
    tier: str
    provider: str
    power_w: float  # per device slot in `scope`, before PUE
    pue: float  # the facility's
    grid_g_co2e_per_kwh: float
    region: str
    scope: str = pw.DEFAULT_SCOPE  # which power the energy figures count
    accelerator_w: float = 0.0
    server_w: float = 0.0

    @property
    def energy_pue(self) -> float:
        """The PUE the scope's energy carries (1 unless facility)."""
        return pw.scope_pue(self.scope, self.pue)


def outcome_inputs(hw: HardwareProfile, user: Assumptions, grid: GridFactor | None,
                   led: Ledger | None = None) -> OutcomeInputs:
    """Price, power, PUE and grid intensity: the user's values or the sourced defaults, each
    recorded in ``led`` when given (the estimate's assumptions)."""
    led = led or Ledger(user)
    price, tier, provider, source = price_quote(hw, user)
    if tier == "custom":
        led.take("price_usd_per_device_hour", None, "USD/device-hour", "")
    else:
        led.take("price_tier", tier, "", "default tier", user.price_tier)
        led.items.append(Assumption(name="price_usd_per_device_hour", value=price,
                                    unit="USD/device-hour", defaulted=True, source=source))
    led.take("power_fraction", pw.ACCELERATOR_FRACTION, "x TDP",
             pw.ACCELERATOR_FRACTION_SOURCE)
    acc_w, host_w = device_power_w(hw, user)
    led.take("host_power_w_per_device", host_w, "W",
             f"{hw.name} nameplate share {hw.host_power_w_per_device.value:g} W x "
             f"{pw.HOST_LOAD_FRACTION:.3f}: {pw.HOST_LOAD_SOURCE}")
    scope = led.take("power_scope", pw.DEFAULT_SCOPE, "",
                     "the facility energy a provider meters (accelerator: the chips alone; "
                     "server: + hosts; facility: x PUE)")
    if grid is None:
        from planner.catalog.regions import world_average
        grid = world_average()
    pue = led.take("pue", grid.pue, "", f"{grid.region}: {grid.pue_source}")
    g = led.take("grid_g_co2e_per_kwh", grid.g_co2e_per_kwh, "g CO2e/kWh",
                 f"{grid.location}: {grid.intensity_source}")
    return OutcomeInputs(price, tier, provider, pw.scope_power_w(scope, acc_w, host_w), pue, g,
                         grid.region, scope, acc_w, acc_w + host_w)


def outcome_values(hw_flops_total, devices, peak_flops_per_s: float, efficiency, goodput,
                   inp: OutcomeInputs) -> dict:
    """FLOPs -> days -> device-hours -> USD -> kWh -> kg CO2e (docs/formulas.md §4.1, §6, §7).

    The one outcome chain: `estimate` runs it per case on numbers, the layout search on
    arrays of candidates to rank them."""
    secs = oc.compute_seconds(hw_flops_total, devices, peak_flops_per_s, efficiency)
    wall_h = oc.wall_clock_hours(secs, goodput)
    dev_h = wall_h * devices
    _, kwh = oc.energy_kwh(dev_h, inp.power_w, inp.energy_pue)
    return {"days": wall_h / HOURS_PER_DAY, "device_hours": dev_h,
            "cost_usd": oc.cost_usd(dev_h, inp.price_usd_per_device_hour),
            "energy_kwh": kwh, "kg_co2e": oc.carbon_kg(kwh, inp.grid_g_co2e_per_kwh)}


def memory_defaults_for(user: Assumptions) -> MemoryDefaults:
    """The memory heuristics with the user's overrides applied (no bookkeeping)."""
    d = MemoryDefaults()
    return MemoryDefaults(
        d.runtime_overhead_bytes if user.runtime_overhead_gib is None
        else user.runtime_overhead_gib * GIB,
        d.fragmentation_fraction if user.fragmentation_fraction is None
        else user.fragmentation_fraction,
        d.logits_bytes_per_element if user.logits_bytes_per_element is None
        else user.logits_bytes_per_element)


def memory_defaults_listed(led: Ledger) -> MemoryDefaults:
    """memory_defaults_for the user's assumptions, each term listed with its source."""
    d = MemoryDefaults()
    led.take("runtime_overhead_gib", d.runtime_overhead_bytes / GIB, "GiB",
                   "heuristic: CUDA context ~0.3-0.7 GB + NCCL communicators + workspaces "
                   "(docs/formulas.md §3.6)")
    led.take("fragmentation_fraction", d.fragmentation_fraction, "fraction",
                    "heuristic allocator slack over the accounted bytes (docs/formulas.md §3.6)")
    led.take("logits_bytes_per_element", d.logits_bytes_per_element, "bytes",
                      "fp32 log-probs + fp32 NLL grad + fp32 log-softmax grad at the start of "
                      "backward (logits -> .float() -> cross_entropy), measured on an H100 "
                      "(docs/validation/2026-11-23-h100.md); fused or chunked losses need "
                      "less, naive ones 8-16 (docs/formulas.md §3.4)")
    return memory_defaults_for(led.user)
