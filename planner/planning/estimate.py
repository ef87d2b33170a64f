"""estimate(): compose the estimators into one explained Estimate. No I/O."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from planner.catalog.regions import GridFactor
from planner.errors import SpecError
from planner.estimators import outcome as oc
from planner.estimators import power as pw
from planner.estimators.flops import training_flops
from planner.estimators.layout import check_layout
from planner.estimators.memory import (
    MemoryDefaults, memory_per_device,
)
from planner.estimators.finetune import finetune_summary
from planner.estimators.params import count_params
from planner.estimators.step_time import (
    COMPONENTS, DEFAULT_PERF, PerfParams, flops_inputs, step_seconds, step_time_terms,
)
from planner.estimators.vec import Degrees
from planner.planning import reliability as rel
from planner.planning.ranges import WORST_CASE_RULE, quantity_ranges, worst_efficiency
from planner.results import (
    Assumption, Carbon, Cost, Energy, Estimate, Flops, HardwareSummary, Layout, LayoutChoice,
    Memory,
    ModelSummary, Outcome, Range, StepBreakdown, Throughput, Time,
)
from planner.specs import Assumptions, HardwareProfile, ModelSpec, ParallelismSpec, TrainingSpec
from planner.units import GIB, HOURS_PER_DAY, SECONDS_PER_HOUR, TERA

PERF = DEFAULT_PERF
EMBODIED_LIFETIME_SOURCE = "LLMCarbon (Faiz et al. 2024) amortises over 5 years"


@dataclass(frozen=True)
class _Case:
    efficiency: float
    goodput: float


class _Ledger:
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


def _efficiencies(hw: HardwareProfile, predicted: float, led: _Ledger) -> tuple[float, ...]:
    """(low, expected, high) fraction of peak: the user's, or the performance model's
    prediction spread by the profile's relative range."""
    if led.user.efficiency is not None:
        eff = led.user.efficiency
        for level in ("low", "expected", "high"):
            led.items.append(Assumption(name=f"efficiency_{level}", value=getattr(eff, level),
                                        unit="fraction of peak", source=eff.source,
                                        defaulted=False))
        return eff.low, eff.expected, eff.high
    prof = hw.efficiency
    lo = worst_efficiency(predicted, prof.low, prof.expected)
    hi = min(1.0, predicted * prof.high / prof.expected)
    led.items.append(Assumption(
        name="efficiency_expected", value=predicted, unit="fraction of peak", defaulted=True,
        source="performance model for this layout (step breakdown; constants calibrated on "
               "Megatron-LM Table 1, checked on Llama 3 Table 4)"))
    source = _spread_source(hw.name, prof.low, prof.expected, prof.high, prof.source)
    for name, value in (("efficiency_low", lo), ("efficiency_high", hi)):
        led.items.append(Assumption(name=name, value=value, unit="fraction of peak",
                                    defaulted=True, source=source))
    return lo, predicted, hi


@lru_cache(maxsize=64)
def _spread_source(name: str, low: float, expected: float, high: float, source: str) -> str:
    return (f"prediction x the relative spread of the {name} profile range "
            f"{low}/{expected}/{high} ({WORST_CASE_RULE}): {source}")


def _cases(effs: tuple[float, ...], devices: int, led: _Ledger,
           ckpt_bytes: float) -> dict[str, _Case]:
    eff_low, eff_exp, eff_high = effs
    g_low, g_exp, g_high = goodput_cases(devices, led.user, ckpt_bytes)
    led.take("goodput_low", g_low, "fraction", rel.FAILURE_MODEL_SOURCE)
    led.take("goodput_expected", g_exp, "fraction", rel.FAILURE_MODEL_SOURCE)
    led.take("goodput_high", g_high, "fraction", rel.FAILURE_MODEL_SOURCE)
    return {"low": _Case(eff_high, g_high), "expected": _Case(eff_exp, g_exp),
            "high": _Case(eff_low, g_low)}


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


@dataclass(frozen=True)
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
                   led: _Ledger | None = None) -> OutcomeInputs:
    """Price, power, PUE and grid intensity: the user's values or the sourced defaults, each
    recorded in ``led`` when given (the estimate's assumptions)."""
    led = led or _Ledger(user)
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


def _memory_defaults(led: _Ledger) -> MemoryDefaults:
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


def _outcome(case: _Case, hw_flops: float, devices: int, peak: float,
             inp: OutcomeInputs) -> Outcome:
    v = outcome_values(hw_flops, devices, peak, case.efficiency, case.goodput, inp)
    return Outcome(efficiency=case.efficiency, goodput=case.goodput, wall_clock_days=v["days"],
                   device_hours=v["device_hours"], cost_usd=v["cost_usd"],
                   energy_kwh=v["energy_kwh"], kg_co2e=v["kg_co2e"])


_RESOLVED: dict = {}


def _resolved_inputs(hw: HardwareProfile, user: Assumptions, grid: GridFactor | None):
    """Memory defaults, price, power, PUE, grid and embodied lifetime with their assumptions:
    they depend on the hardware, the user's assumptions and the grid only, so a long-lived
    process (the API, a sweep) resolves them once per combination."""
    key = (id(hw), user, grid)
    hit = _RESOLVED.get(key)
    if hit is not None and hit[0] is hw:
        return hit[1]
    led = _Ledger(user)
    mem_defaults = _memory_defaults(led)
    inp = outcome_inputs(hw, user, grid, led)
    lifetime = led.take("embodied_lifetime_years", 5.0, "years", EMBODIED_LIFETIME_SOURCE)
    value = (inp, mem_defaults, lifetime, tuple(led.items))
    if len(_RESOLVED) > 256:
        _RESOLVED.clear()
    _RESOLVED[key] = (hw, value)
    return value


def estimate(
    model: ModelSpec,
    hw: HardwareProfile,
    training: TrainingSpec,
    par: ParallelismSpec,
    assumptions: Assumptions = Assumptions(),
    grid: GridFactor | None = None,
    notes: tuple[Assumption, ...] = (),
    warnings: tuple[str, ...] = (),
    choice: LayoutChoice | None = None,
    perf: PerfParams = DEFAULT_PERF,
) -> Estimate:
    """Parameters, FLOPs, memory, time, cost, energy and carbon of one training plan
    (``perf``: the performance model's constants, a calibration's when one applies)."""
    check_layout(model, training, par, hw)
    led = _Ledger(assumptions)
    params = count_params(model)
    fl = training_flops(model, training, params)
    peak = hw.peak_flops_per_s(training.precision)
    assert peak is not None  # check_layout guarantees it
    lay = Degrees.from_specs(training, par)
    terms = step_time_terms(model, training, lay, hw, params,
                            flops_inputs(model, training, params), perf)
    step_s = step_seconds(terms)
    tokens_step = training.global_batch_size * training.seq_len
    predicted_hfu = fl.hardware_per_token * tokens_step / (step_s * par.devices * peak)
    ckpt = rel.checkpoint_bytes_for(params.total, training)
    cases = _cases(_efficiencies(hw, predicted_hfu, led), par.devices, led, ckpt)
    inp, mem_defaults, lifetime, fixed_items = _resolved_inputs(hw, assumptions, grid)
    led.items.extend(fixed_items)
    mem = memory_per_device(model, training, par, hw.memory_bytes, mem_defaults, lay, params)
    price, tier, provider, power_w, pue, g = (
        inp.price_usd_per_device_hour, inp.tier, inp.provider, inp.power_w, inp.pue,
        inp.grid_g_co2e_per_kwh)
    outs = {k: _outcome(c, fl.hardware_total, par.devices, peak, inp)
            for k, c in cases.items()}
    exp, case = outs["expected"], cases["expected"]
    emb = hw.embodied_kg_co2e_per_device
    it_kwh, fac_kwh = oc.energy_kwh(exp.device_hours, inp.server_w, pue)
    steps = training.tokens / (training.global_batch_size * training.seq_len)
    compute_h = exp.wall_clock_days * HOURS_PER_DAY * case.goodput
    hfu = case.efficiency
    mfu = hfu * fl.model_per_token / fl.hardware_per_token
    tok_s = training.tokens / (compute_h * SECONDS_PER_HOUR)
    reliab, rel_notes = rel.reliability(par.devices, assumptions, ckpt, case.goodput, compute_h)
    spans = quantity_ranges((cases["high"].efficiency, hfu, cases["low"].efficiency), mfu,
                            compute_h * SECONDS_PER_HOUR / steps, mem.total_bytes)
    return Estimate(
        model=ModelSummary(
            name=model.name, params_total=params.total, params_active=params.active,
            matmul_params_active=params.matmul_active, num_layers=model.num_layers,
            d_model=model.d_model, attention=model.attention_kind, moe=model.is_moe,
            source_url=model.source_url, **finetune_summary(model, training.finetune)),
        hardware=HardwareSummary(
            name=hw.name, display_name=hw.display_name, precision=training.precision,
            peak_tflops=peak / TERA, memory_bytes=hw.memory_bytes,
            validation=hw.validation.basis.replace("_", " ") if hw.validation else "scaled"),
        tokens=training.tokens,
        layout=Layout(
            devices=par.devices, dp=par.dp, tp=par.tp, pp=par.pp, cp=par.cp, ep=par.ep,
            zero_stage=par.zero_stage, sequence_parallel=par.sp,
            pipeline_schedule=par.pipeline_schedule,
            micro_batch_size=training.micro_batch_size,
            global_batch_size=training.global_batch_size,
            num_micro_batches=training.global_batch_size // (par.dp * training.micro_batch_size),
            seq_len=training.seq_len, recompute=training.recompute, dp_shard=par.shard,
            reshard_after_forward=par.reshard_after_forward,
            tp_comm_overlap=par.tp_comm_overlap, dp_comm_overlap=par.dp_comm_overlap,
            framework=par.framework,
            offload=par.offload, dropout=training.dropout),
        flops=Flops(
            per_token=fl.model_per_token, total=fl.model_total,
            hardware_per_token=fl.hardware_per_token, hardware_total=fl.hardware_total,
            inference_per_token=fl.inference_per_token,
            attention_fraction=fl.attention_per_token / fl.model_per_token,
            convention=f"{training.attention_flops} attention"),
        memory_per_device=Memory(
            **{k: getattr(mem, k) for k in (
                "weights_bytes", "gradients_bytes", "optimizer_bytes", "activations_bytes",
                "logits_bytes", "fsdp_buffer_bytes", "runtime_overhead_bytes",
                "fragmentation_bytes", "total_bytes", "capacity_bytes", "headroom_bytes",
                "fits", "stage", "in_flight_micro_batches", "dequant_workspace_bytes")}),
        throughput=Throughput(
            tflops_per_device=hfu * peak / TERA, model_tflops_per_device=mfu * peak / TERA,
            mfu=mfu, hfu=hfu, tokens_per_s_per_device=tok_s / par.devices, tokens_per_s=tok_s),
        step=StepBreakdown(
            method=("flat efficiency" if assumptions.efficiency else
                    "performance model" if perf == DEFAULT_PERF else
                    "calibrated performance model"),
            step_time_s=step_s, **{f"{k}_s": terms[k] for k in COMPONENTS},
            gemm_efficiency=terms["gemm_efficiency"], predicted_hfu=predicted_hfu,
            predicted_mfu=predicted_hfu * fl.model_per_token / fl.hardware_per_token),
        time=Time(
            wall_clock_days=exp.wall_clock_days,
            wall_clock_hours=exp.wall_clock_days * HOURS_PER_DAY,
            device_hours=exp.device_hours, compute_hours=compute_h, goodput=case.goodput,
            steps=steps, step_time_s=compute_h * SECONDS_PER_HOUR / steps),
        cost=Cost(total_usd=exp.cost_usd, usd_per_device_hour=price, tier=tier,
                  provider=provider),
        energy=Energy(kwh=exp.energy_kwh, it_kwh=it_kwh, power_per_device_w=power_w, pue=pue,
                      scope=inp.scope, accelerator_kwh=exp.device_hours * inp.accelerator_w / 1e3,
                      facility_kwh=fac_kwh),
        carbon=Carbon(
            kg_co2e=exp.kg_co2e, grid_g_co2e_per_kwh=g, pue=pue, region=inp.region,
            scope=inp.scope,
            embodied_kg_co2e=(oc.embodied_kg(exp.device_hours, emb.value, lifetime)
                              if emb else None)),
        range=Range(low=outs["low"], expected=exp, high=outs["high"]),
        assumptions=[*notes, *led.items, *rel_notes, *_perf_assumptions(perf),
                     *_fixed_assumptions(training, par)],
        warnings=[*warnings, *_warnings(model, training, par, mem)],
        layout_choice=choice, reliability=reliab, ranges=spans,
    )


@lru_cache(maxsize=8)
def _perf_assumptions(perf: PerfParams) -> tuple[Assumption, ...]:
    return tuple(Assumption(name=f"perf.{k}", value=getattr(perf, k), unit="",
                            source=src if getattr(perf, k) == getattr(DEFAULT_PERF, k) else
                            "calibrated (see the 'calibration' assumption)",
                            defaulted=getattr(perf, k) == getattr(DEFAULT_PERF, k))
                 for k, src in PerfParams.SOURCES.items())


_FIXED_FIELDS = (("micro_batch_size", "precision", "optimizer", "recompute", "flash_attention",
                  "attention_flops", "dropout"),
                 ("zero_stage", "pipeline_schedule", "framework", "offload",
                  "tp_comm_overlap", "dp_comm_overlap"))
# Where a defaulted execution choice comes from (the rest: "planner default").
_FIXED_SOURCES = {
    "dropout": "planner default: off, as modern LLM pre-training (Llama 3, OLMo 2); on "
               "saves Korthikanti et al. 2022's masks",
    "framework": "planner default: generic = ZeRO's accounting (2+2+12 B/param, eager "
                 "SwiGLU); megatron, fsdp2, deepspeed follow theirs (docs/performance-model.md)",
}


def _fixed_assumptions(training: TrainingSpec, par: ParallelismSpec) -> tuple[Assumption, ...]:
    """Training and layout settings that the user left at their defaults."""
    return _fixed_for(frozenset(training.model_fields_set), frozenset(par.model_fields_set),
                      tuple(getattr(training, f) for f in _FIXED_FIELDS[0]),
                      tuple(getattr(par, f) for f in _FIXED_FIELDS[1]), par.tp > 1)


@lru_cache(maxsize=256)
def _fixed_for(train_set: frozenset, par_set: frozenset, train_values: tuple,
               par_values: tuple, tp_above_one: bool) -> tuple[Assumption, ...]:
    out = []
    for given, fields, values in ((train_set, _FIXED_FIELDS[0], train_values),
                                  (par_set, _FIXED_FIELDS[1], par_values)):
        for f, value in zip(fields, values):
            if f not in given:
                out.append(Assumption(name=f, value=str(value), unit="",
                                      source=_FIXED_SOURCES.get(f, "planner default"),
                                      defaulted=True))
    if "dp_shard" not in par_set:
        out.append(Assumption(name="dp_shard", value="dp (no HSDP)", unit="",
                              source="planner default: ZeRO/FSDP shard over all of dp",
                              defaulted=True))
    if "sequence_parallel" not in par_set and tp_above_one:
        out.append(Assumption(name="sequence_parallel", value="True", unit="",
                              source="planner default: on when tp > 1", defaulted=True))
    return tuple(out)


def _warnings(model: ModelSpec, training: TrainingSpec, par: ParallelismSpec,
              mem) -> list[str]:
    w = []
    chunks = par.pp * par.virtual_stages
    if model.num_layers % chunks:
        busiest = -(-model.num_layers // chunks) * par.virtual_stages
        w.append(f"uneven pipeline stages: {model.num_layers} layers over {chunks} model "
                 f"chunks; the busiest stage holds {busiest} layers and sets the pace")
    if training.seq_len > model.max_seq_len:
        w.append(f"seq_len {training.seq_len} exceeds {model.name}'s max_seq_len "
                 f"{model.max_seq_len}")
    if mem.fits and mem.headroom_bytes < 0.05 * mem.capacity_bytes:
        w.append(f"memory headroom is only {mem.headroom_bytes / GIB:.1f} GiB")
    return w
