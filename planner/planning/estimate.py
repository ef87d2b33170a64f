"""estimate(): compose the estimators into one explained Estimate. No I/O."""

from __future__ import annotations

from functools import lru_cache
from operator import attrgetter

from planner.catalog.regions import GridFactor
from planner.estimators import outcome as oc
from planner.estimators.flops import training_flops
from planner.estimators.layout import check_layout
from planner.estimators.memory import memory_per_device
from planner.estimators.model_state import grad_dtype_of
from planner.estimators.finetune import adapter_grad_dtype, finetune_summary, \
    trains_base_weights
from planner.estimators.params import count_params
from planner.estimators.step_time import (
    COMPONENTS, DEFAULT_PERF, PerfParams, flops_inputs, overlapped_comm_s, step_seconds,
    step_time_terms,
)
from planner.estimators.vec import Degrees
from planner.planning import reliability as rel
from planner.planning.outcome_chain import (
    Ledger, OutcomeInputs, memory_defaults_listed, goodput_cases, outcome_inputs, outcome_values,
)
from planner.planning.ranges import WORST_CASE_RULE, quantity_ranges, worst_efficiency
from planner.results import (
    Assumption, Carbon, Cost, Energy, Estimate, Flops, HardwareSummary, Layout, LayoutChoice,
    Memory,
    ModelSummary, Outcome, Range, StepBreakdown, Throughput, Time, frozen,
)
from planner.specs import Assumptions, HardwareProfile, ModelSpec, ParallelismSpec, TrainingSpec
from planner.vocab import FRAMEWORKS
from planner.units import GIB, HOURS_PER_DAY, SECONDS_PER_HOUR, TERA


PERF = DEFAULT_PERF
EMBODIED_LIFETIME_SOURCE = "LLMCarbon (Faiz et al. 2024) amortises over 5 years"


@frozen
class _Case:
    efficiency: float
    goodput: float


def _efficiencies(hw: HardwareProfile, predicted: float, led: Ledger) -> tuple[float, ...]:
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


def _cases(effs: tuple[float, ...], devices: int, led: Ledger,
           ckpt_bytes: float) -> dict[str, _Case]:
    eff_low, eff_exp, eff_high = effs
    g_low, g_exp, g_high = goodput_cases(devices, led.user, ckpt_bytes)
    led.take("goodput_low", g_low, "fraction", rel.FAILURE_MODEL_SOURCE)
    led.take("goodput_expected", g_exp, "fraction", rel.FAILURE_MODEL_SOURCE)
    led.take("goodput_high", g_high, "fraction", rel.FAILURE_MODEL_SOURCE)
    return {"low": _Case(efficiency=eff_high, goodput=g_high),
            "expected": _Case(efficiency=eff_exp, goodput=g_exp),
            "high": _Case(efficiency=eff_low, goodput=g_low)}


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
    led = Ledger(user)
    mem_defaults = memory_defaults_listed(led)
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
    led = Ledger(assumptions)
    params = count_params(model)
    fl = training_flops(model, training, params)
    peak = hw.peak_flops_per_s(training.precision)
    assert peak is not None  # check_layout guarantees it
    lay = Degrees.from_specs(training, par)
    terms = step_time_terms(model, training, lay, hw, params,
                            flops_inputs(model, training, params), perf)
    step_s = step_seconds(terms)
    hidden = float(overlapped_comm_s(terms))  # communication run under compute, for free
    tokens_step = training.global_batch_size * training.seq_len
    predicted_hfu = fl.hardware_per_token * tokens_step / (step_s * par.devices * peak)
    ckpt = rel.checkpoint_bytes_for(model, params.total, training)
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
            offload=par.offload, dropout=training.dropout, kernels=training.kernels,
            grad_dtype=_grad_dtype(training, par),
            adapter_grad_dtype=adapter_grad_dtype(training.finetune),
            base_grads=trains_base_weights(model, training.finetune),
            attention_kernel=training.attention_kernel,
            virtual_stages=par.virtual_stages),
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
            predicted_mfu=predicted_hfu * fl.model_per_token / fl.hardware_per_token,
            overlapped_comm_s=hidden),
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
        warnings=[*warnings, *_warnings(model, training, par, mem), *_unused(assumptions),
                  *_overlap_warning(hidden, float(terms["compute"]), assumptions)],
        layout_choice=choice, reliability=reliab, ranges=spans,
    )


@lru_cache(maxsize=8)
def _perf_assumptions(perf: PerfParams) -> tuple[Assumption, ...]:
    return tuple(Assumption(name=f"perf.{k}", value=getattr(perf, k), unit="",
                            source=src if getattr(perf, k) == getattr(DEFAULT_PERF, k) else
                            "calibrated (see the calibration assumptions)",
                            defaulted=getattr(perf, k) == getattr(DEFAULT_PERF, k))
                 for k, src in PerfParams.SOURCES.items())


_FIXED_FIELDS = (("micro_batch_size", "precision", "optimizer", "recompute", "flash_attention",
                  "attention_flops", "dropout", "kernels", "attention_kernel"),
                 ("zero_stage", "pipeline_schedule", "framework", "offload",
                  "tp_comm_overlap", "dp_comm_overlap"))
_FIXED_GET = tuple(attrgetter(*fields) for fields in _FIXED_FIELDS)  # -> a tuple of values
# Where a defaulted execution choice comes from (the rest: "planner default").
_FIXED_SOURCES = {
    "dropout": "planner default: off, as modern LLM pre-training (Llama 3, OLMo 2); on "
               "saves Korthikanti et al. 2022's masks",
    "kernels": "planner default: fused norms, activations and loss (Megatron-LM, Transformer "
               "Engine, Liger, torch.compile); plain PyTorch is --kernels eager, ~10x the "
               "elementwise traffic (docs/performance-model.md)",
    "attention_kernel": "planner default: native, the fused attention kernel written for the "
                        "device (FlashAttention-2 on Ampere and Ada; FlashAttention-3, cuDNN, "
                        "Transformer Engine on Hopper, as PyTorch's SDPA picks cuDNN on H100); "
                        "--attention-kernel fa2 for FlashAttention-2 stacks (0.57x on Hopper)",
    "framework": "planner default: generic = ZeRO's accounting (2+2+12 B/param, eager "
                 "SwiGLU); megatron, fsdp2, deepspeed follow theirs (docs/performance-model.md)",
}


def _grad_dtype(training: TrainingSpec, par: ParallelismSpec) -> str:
    return grad_dtype_of(training.optimizer, training.precision,
                         FRAMEWORKS.index(par.framework), training.grad_dtype)


GRAD_DTYPE_SOURCE = ("the framework's convention: megatron accumulates in fp32 main_grad "
                     "with bf16 (in fp16 with --fp16), fsdp2 in its sharded parameters' dtype "
                     "(fp32 masters; torchtitan reduces in fp32), generic and deepspeed in "
                     "the optimizer recipe's (ZeRO's accounting: the 16-bit compute dtype for "
                     "AdamW); --grad-dtype sets it")


def _fixed_assumptions(training: TrainingSpec, par: ParallelismSpec) -> tuple[Assumption, ...]:
    """Training and layout settings that the user left at their defaults."""
    grad = None if training.grad_dtype is not None else _grad_dtype(training, par)
    return _fixed_for(frozenset(training.model_fields_set), frozenset(par.model_fields_set),
                      _FIXED_GET[0](training), _FIXED_GET[1](par), par.tp > 1, grad)


@lru_cache(maxsize=256)
def _fixed_for(train_set: frozenset, par_set: frozenset, train_values: tuple,
               par_values: tuple, tp_above_one: bool, grad: str | None
               ) -> tuple[Assumption, ...]:
    out = []
    for given, fields, values in ((train_set, _FIXED_FIELDS[0], train_values),
                                  (par_set, _FIXED_FIELDS[1], par_values)):
        for f, value in zip(fields, values):
            if f not in given:
                out.append(Assumption(name=f, value=str(value), unit="",
                                      source=_FIXED_SOURCES.get(f, "planner default"),
                                      defaulted=True))
    if grad is not None:
        out.append(Assumption(name="grad_dtype", value=grad, unit="", source=GRAD_DTYPE_SOURCE,
                              defaulted=True))
    if "dp_shard" not in par_set:
        out.append(Assumption(name="dp_shard", value="dp (no HSDP)", unit="",
                              source="planner default: ZeRO/FSDP shard over all of dp",
                              defaulted=True))
    if "sequence_parallel" not in par_set and tp_above_one:
        out.append(Assumption(name="sequence_parallel", value="True", unit="",
                              source="planner default: on when tp > 1", defaulted=True))
    return tuple(out)


def _unused(user: Assumptions) -> list[str]:
    """Goodput-model flags that a fixed --goodput overrides."""
    if user.goodput_expected is None:
        return []
    given = [flag for flag, v in (("--failure-rate", user.failure_rate_per_device_hour),
                                  ("--restart-minutes", user.restart_minutes),
                                  ("--stall-fraction", user.stall_fraction)) if v is not None]
    if not given:
        return []
    verb = "does" if len(given) == 1 else "do"
    return [f"--goodput is given, so {' and '.join(given)} {verb} not change the answer "
            "(shown in the Failures and Stalls lines only)"]


# Communication hidden under this share of compute or more is warned: the held-out rows
# with the most of it (IBM/PyTorch's FSDP blog, 41-68% on slow networks) are off by -9.5% to
# +18% (the H100 rows, at 52-68%, all fast: +6% to +18%), where the rows with less (NeMo,
# torchtitan, at most 38%) are within 9% (docs/validation.md, "Overlap").
OVERLAP_WARN = 0.4


def _overlap_warning(hidden: float, compute: float, assumptions: Assumptions) -> list[str]:
    if assumptions.efficiency is not None or compute <= 0 or hidden < OVERLAP_WARN * compute:
        return []
    return [f"communication runs under {hidden / compute:.0%} of this layout's compute and "
            "is charged as free (perfect overlap; kernels sharing a GPU slow each other); "
            "the validated runs with the most overlap (IBM's FSDP, 41-68%) are -9.5% to "
            "+18% off the model, the H100 ones all faster than they ran: this step may be "
            "optimistic by that much (docs/performance-model.md, Overlap)"]


def _warnings(model: ModelSpec, training: TrainingSpec, par: ParallelismSpec,
              mem) -> list[str]:
    w = []
    ft = training.finetune
    if training.grad_dtype is not None and not trains_base_weights(model, ft):
        w.append(f"--grad-dtype {training.grad_dtype} moves nothing: {ft.mode} trains none of "
                 f"the model's weights, and its adapters' gradients are held in their own "
                 f"precision ({adapter_grad_dtype(ft)}, finetune.adapter_precision)")
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
    micro_batches = training.global_batch_size // (
        training.micro_batch_size * par.devices // (par.tp * par.pp * par.cp))
    if par.framework == "megatron" and _grad_dtype(training, par) == "fp16" and \
            micro_batches > 1:
        w.append("--framework megatron with fp16 gradients: gradient accumulation is charged "
                 "unfused, as Megatron-LM ran it before 2022-09 (07916bf245 fuses into fp16 "
                 "too); with today's Megatron-LM this step is a few percent pessimistic "
                 "(--grad-dtype fp32 is --accumulate-allreduce-grads-in-fp32, fused)")
    return w
