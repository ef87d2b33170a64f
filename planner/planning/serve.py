"""`planner serve`: size an inference deployment — replicas x (tp, pp, ep) per replica, the batch
that meets the latency targets, devices for the load, $ / Wh / g CO2e per million tokens.

    >>> ans = serve("llama3-70b", ["h100-sxm"], 1000, 500, load=("rate", 20.0), tpot_s=0.04)

Model, hardware, price, power, PUE and grid resolve exactly as every command resolves them
(`resolve.apply_shape`, the catalog, `estimate.outcome_inputs`): one question, one answer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from planner.catalog.catalog import hardware_paths, load_hardware
from planner.errors import InfeasibleError, SpecError
from planner.estimators.params import count_params
from planner.estimators.serving import (
    WEIGHT_PRECISIONS, Layout, ServeConfig, ServePerf, peak_for,
)
from planner.planning.outcome_chain import Ledger, outcome_inputs
from planner.planning.serve_option import option
from planner.planning.serve_point import Point, largest_batch, replica_memory, steady_state
from planner.planning.serve_queue import QUEUE_SOURCE, replicas_for_capacity, replicas_for_ttft
from planner.planning.serve_request import (  # noqa: F401 (ServeRequest: the public entry)
    ServeQuestion, ServeRequest, default_note, resolve_serve,
)
from planner.results import ModelSummary
from planner.results_serving import ServeAnswer, ServeOption
from planner.specs import HardwareProfile, ModelSpec

LOAD_KINDS = ("rate", "tokens_per_day", "concurrency")
SECONDS_PER_DAY = 86400.0


def candidate_layouts(model: ModelSpec, hw: HardwareProfile, q: ServeQuestion) -> list[Layout]:
    """Replica layouts to try: tp a power of two inside the scale-up domain dividing the
    heads, pp in 1, 2, 4, 8 (<= layers), for an MoE ep a power of two dividing the experts
    with ep x tp inside the scale-up domain (the all-to-alls stay on the scale-up link); at
    most --devices devices; --tp / --pp / --ep fix them."""
    domain = int(hw.scale_up_domain_devices.value)
    tps = [t for t in (1, 2, 4, 8, 16, 32, 64, 72) if t <= domain and model.num_heads % t == 0]
    if q.pp is not None and q.pp > model.num_layers:
        raise SpecError(f"--pp {q.pp}: {model.name} has {model.num_layers} layers; give at "
                        f"most {model.num_layers} stages")
    pps = [q.pp] if q.pp is not None else [p for p in (1, 2, 4, 8) if p <= model.num_layers]
    eps = [e for e in (1, 2, 4, 8, 16, 32, 64) if e <= domain
           and (e == 1 or (model.moe and model.moe.num_experts % e == 0))]
    if q.ep is not None and q.ep not in eps:
        what = (f"{model.name} is dense" if not model.moe else
                f"ep must divide {model.name}'s {model.moe.num_experts} experts and stay "
                f"inside {hw.name}'s scale-up domain of {domain}")
        raise SpecError(f"--ep {q.ep}: {what}; use one of {', '.join(map(str, eps))}")
    out = [Layout(t, p, e) for p in pps for e in eps for t in tps
           if (q.tp is None or t == q.tp) and (q.pp is None or p == q.pp)
           and (q.ep is None or e == q.ep) and t * e <= domain
           and (q.devices is None or t * p * e <= q.devices)]
    if q.tp is not None and q.tp not in tps:
        raise SpecError(f"--tp {q.tp}: a replica's tp must divide {model.name}'s "
                        f"{model.num_heads} heads and stay inside {hw.name}'s scale-up domain "
                        f"of {domain}; use one of {', '.join(map(str, tps))}")
    return out


def layout_text(lay: Layout) -> str:
    """tp 2 x pp 1, or tp 1 x pp 1 x ep 8 when experts are sharded."""
    ep = f" x ep {lay.ep}" if lay.ep > 1 else ""
    return f"tp {lay.tp} x pp {lay.pp}{ep}"


@dataclass(frozen=True)
class _Candidate:
    layout: Layout
    batch: int
    limited_by: str
    point: Point
    replicas: int
    memory: Any

    @property
    def devices(self) -> int:
        return self.replicas * self.layout.devices


def _replicas(q: ServeQuestion, lay: Layout, p: Point) -> int:
    if q.devices is not None:
        return max(1, q.devices // lay.devices)
    if q.load is None:
        return 1
    kind, value = q.load
    if kind == "concurrency":
        return math.ceil(value / p.batch)
    # a rate: below capacity (a queue is stable only there), then enough replicas that the
    # wait for a slot keeps TTFT p50 within --ttft-p50
    return replicas_for_ttft(q, p, replicas_for_capacity(q, p))


def _evaluate(q: ServeQuestion, hw: HardwareProfile, lay: Layout, reasons: dict):
    cfg = ServeConfig(q.precision, q.kv_precision, lay)
    mem = replica_memory(q.model, hw, cfg, sum(q.lengths), q.engine)
    if mem.max_sequences < 1:
        reasons.setdefault("memory", []).append((lay, mem))
        return None
    # max_batch caps each engine: one per ep group (vLLM's data-parallel ranks each have
    # their own max_num_seqs)
    cap = mem.max_sequences if q.engine.max_batch is None else \
        min(mem.max_sequences, q.engine.max_batch * lay.ep)
    batch, limit = largest_batch(q.model, hw, cfg, q.lengths, cap, q.targets, q.perf, q.opts)
    if batch == 0:
        best = steady_state(q.model, hw, cfg, q.lengths, 1, q.perf, opts=q.opts)
        reasons.setdefault(limit, []).append((lay, best))
        return None
    if limit == "cap":
        limit = "memory" if cap == mem.max_sequences else "max_batch"
    p = steady_state(q.model, hw, cfg, q.lengths, batch, q.perf, opts=q.opts)
    return _Candidate(lay, batch, limit, p, _replicas(q, lay, p), mem)


def _rank_key(q: ServeQuestion, c: _Candidate):
    per_device = c.point.output_tokens_per_s / c.layout.devices
    if q.devices is not None:  # best deployment on N devices: most tokens/s in all
        return (-c.replicas * c.point.output_tokens_per_s, c.layout.devices)
    if q.load is not None:  # fewest devices for the load
        return (c.devices, -per_device)
    return (-per_device, c.layout.devices)  # one replica: cheapest per token


def best_option(q: ServeQuestion, hw: HardwareProfile) -> tuple[_Candidate, int, int]:
    """(the best candidate on this hardware, layouts searched, layouts that answered)."""
    if peak_for(hw, q.precision) is None:
        have = [p for p in WEIGHT_PRECISIONS if peak_for(hw, p) is not None]
        where = ""
        if q.precision == "fp4":  # name the profiles that have the path (error path only)
            names = sorted(n for n in hardware_paths()
                           if load_hardware(n).peak_dense_fp4_tflops is not None)
            where = f"; fp4 runs on {', '.join(names)}"
        raise SpecError(f"--precision {q.precision}: {hw.name} has no {q.precision} compute "
                        f"path in its profile{where}; {hw.name} serves {', '.join(have)}")
    layouts = candidate_layouts(q.model, hw, q)
    reasons: dict[str, list] = {}
    found = [c for c in (_evaluate(q, hw, lay, reasons) for lay in layouts) if c is not None]
    if not found:
        raise InfeasibleError(_no_layout_message(q, hw, layouts, reasons))
    found.sort(key=lambda c: _rank_key(q, c))
    return found[0], len(layouts), len(found)


def _no_layout_message(q: ServeQuestion, hw: HardwareProfile, layouts: list[Layout],
                       reasons: dict) -> str:
    inp, out = q.lengths
    where = f"{q.model.name} at {q.precision} on {hw.name}"
    if not layouts:
        return (f"{where}: no layout with --tp {q.tp} --pp {q.pp} --ep {q.ep} within --devices "
                f"{q.devices}; tp must divide {q.model.num_heads} heads and be at most "
                f"{int(hw.scale_up_domain_devices.value)}")
    timed = reasons.get("tpot", []) + reasons.get("ttft", [])
    if timed:
        ttft_max, tpot_max = q.targets
        tpot = min(p.tpot_s for _, p in timed)
        ttft = min(p.ttft_s for _, p in timed)
        lay = min(timed, key=lambda r: r[1].tpot_s)[0]
        if "tpot" in reasons and tpot > (tpot_max or math.inf):
            return (f"--tpot {tpot_max * 1e3:g}ms: no layout of {where} meets it; the "
                    f"fastest is {tpot * 1e3:.1f} ms per token ({layout_text(lay)}, "
                    f"batch 1); give --tpot {math.ceil(tpot * 1e3)}ms or more, a lower "
                    "--precision, or faster hardware")
        return (f"--ttft-p50 {ttft_max:g}s: no layout of {where} meets it for "
                f"{inp:,} input tokens; the fastest is {ttft:.3g} s; give --ttft-p50 "
                f"{ttft:.3g}s or more, or fewer --input-tokens")
    mems = reasons.get("memory", [])
    lay, mem = max(mems, key=lambda r: r[1].kv_free_bytes)
    if mem.kv_free_bytes <= 0:
        room = mem.usable_bytes - mem.workspace_bytes - mem.runtime_bytes
        need = mem.weights_bytes * lay.devices / room if room > 0 else math.inf
        fewest = f"needs at least {2 ** math.ceil(math.log2(need)):,} devices at this " \
            "precision; " if math.isfinite(need) else ""
        return (f"{where} does not fit: the weights take {mem.weights_bytes / 2**30:.1f} GiB "
                f"per device at {layout_text(lay)} ({mem.usable_bytes / 2**30:.1f} GiB "
                f"usable); it {fewest}try --precision fp8 or int4, or more --devices")
    return (f"--input-tokens {inp} + --output-tokens {out}: a context of {inp + out:,} "
            f"tokens does not fit {where}; the most that fits is "
            f"{int(mem.max_context_tokens):,} tokens ({layout_text(lay)}); try "
            "--kv-precision fp8, a lower --precision or more --devices")


def serve(model, hardware: list[str], input_tokens: int, output_tokens: int,
          **options) -> ServeAnswer:
    """The serving answer on each hardware (the options are ServeRequest's fields; any other
    keyword is an outcome-chain assumption: price_tier, pue, grid_g_co2e_per_kwh, ...)."""
    return answer(resolve_serve(ServeRequest.of(model, hardware, input_tokens, output_tokens,
                                                **options)))


def answer(q: ServeQuestion) -> ServeAnswer:
    """Search each hardware's layouts for the question and explain the result."""
    led = Ledger(q.assumptions)
    options = []
    for i, hw in enumerate(q.hardware):
        sub = Ledger(q.assumptions)
        inp = outcome_inputs(hw, q.assumptions, q.grid, sub)
        if i == 0:
            led.items.extend(sub.items)
        best, searched, fitting = best_option(q, hw)
        options.append(option(q, hw, best, inp, searched, fitting))
    perf_notes = [default_note("hbm_efficiency", "/".join(f"{x:g}" for x in q.perf.hbm_efficiency),
                        "best/expected/worst", ServePerf.SOURCE),
                  default_note("gemm_efficiency", "/".join(f"{x:g}" for x in q.perf.gemm_efficiency),
                        "best/expected/worst", ServePerf.SOURCE),
                  default_note("step_overhead_s", q.perf.step_overhead_s, "s", ServePerf.SOURCE),
                  default_note("allreduce_latency_s", q.perf.allreduce_latency_s, "s",
                        "NCCL small-message all-reduce on NVLink, ~5-10 us (nccl-tests)"),
                  default_note("ttft", "slot wait p50 + prefill + half an iteration", "",
                        "the request waits for a batch slot, then its prefill runs in the "
                        "next iteration: docs/commands/serve.md"),
                  default_note("queueing", "M/D/c", "", QUEUE_SOURCE)]
    p = count_params(q.model)
    summary = ModelSummary(
        name=q.model.name, params_total=p.total, params_active=p.active,
        matmul_params_active=p.matmul_active, num_layers=q.model.num_layers,
        d_model=q.model.d_model, attention=q.model.attention_kind, moe=q.model.is_moe,
        source_url=q.model.source_url)
    return ServeAnswer(
        model=summary, input_tokens=q.lengths[0], output_tokens=q.lengths[1],
        load=_load_dict(q), targets={"ttft_p50_s": q.targets[0], "tpot_s": q.targets[1]},
        question=_question(q), options=options,
        assumptions=[*q.notes, *led.items, *perf_notes], warnings=_warnings(q, options))


def _load_dict(q: ServeQuestion) -> dict:
    if q.devices is not None:
        return {"kind": "devices", "value": q.devices}
    if q.load is None:
        return {"kind": "none", "value": None}
    return {"kind": q.load[0], "value": q.load[1]}


def _question(q: ServeQuestion) -> str:
    if q.devices is not None:
        return f"the best deployment on {q.devices} devices"
    if q.load is None:
        return "one replica at the batch that meets the targets (cheapest per token)"
    kind, v = q.load
    what = {"rate": f"{v:g} requests/s", "tokens_per_day": f"{v:,.0f} tokens/day",
            "concurrency": f"{v:,.0f} concurrent requests"}[kind]
    return f"the fewest devices that serve {what}"


def _warnings(q: ServeQuestion, options: list[ServeOption]) -> list[str]:
    out = []
    if any(n.name in ("input_tokens", "output_tokens") for n in q.notes):
        out.append(f"--input-tokens/--output-tokens not given: {q.lengths[0]:,} + "
                   f"{q.lengths[1]:,} tokens per request (a chat turn); every answer scales "
                   "with them, so give your own")
    if q.targets == (None, None):
        out.append("no --tpot or --ttft-p50 given: the batch is as large as memory and "
                   "max_batch allow, so latency is whatever that batch gives")
    for o in options:
        if o.worst_case_replicas is not None:
            out.append(f"{o.hardware}: in the worst case the load exceeds {o.replicas} "
                       f"replica(s)' capacity and the queue grows without bound (it needs "
                       f"{o.worst_case_replicas}); TTFT high shows the expected case's wait")
        if o.ttft_queue_s > 0:
            out.append(f"{o.hardware}: at {o.utilization:.0%} of capacity a request waits "
                       f"{o.ttft_queue_s * 1e3:,.0f} ms (p50) for a batch slot; give "
                       "--ttft-p50 to size the replicas for it")
        if o.utilization < 0.5 and q.load is not None:
            out.append(f"{o.hardware}: the load uses {o.utilization:.0%} of "
                       f"{o.replicas} replica(s); cost per token includes the idle share")
    return out


def serve_candidates(model, settings, candidates, assumptions: dict,
                     profiles_dirs: tuple[str, ...] = ()) -> tuple[ServeAnswer | None, list[str]]:
    """A scenario's `serving:` block on each candidate hardware (its own region and price):
    one ServeAnswer with a row per candidate that can serve, and a warning per one that
    cannot (as `planner compare` leaves out an option)."""
    answers, skipped = [], []
    for i, cand in enumerate(candidates):
        opts = dict(assumptions)
        if cand.price_tier:
            opts["price_tier"] = cand.price_tier
        if cand.price_usd_per_device_hour:
            opts["price_usd_per_device_hour"] = cand.price_usd_per_device_hour
        try:
            answers.append(serve(
                model, [cand.hardware], settings.input_tokens, settings.output_tokens,
                precision=settings.precision, kv_precision=settings.kv_precision,
                load=settings.load(),
                ttft_s=None if settings.ttft_p50_ms is None else settings.ttft_p50_ms / 1e3,
                tpot_s=None if settings.tpot_ms is None else settings.tpot_ms / 1e3,
                max_batch=-1 if settings.max_batch is None else settings.max_batch,
                region=cand.region, profiles_dirs=profiles_dirs, **opts))
        except (InfeasibleError, SpecError) as e:  # no layout, or no path for the precision
            skipped.append(f"serving on hardware[{i}] ({cand.hardware}): {e}")
    if not answers:
        return None, skipped
    first = answers[0]
    merged = ServeAnswer(
        model=first.model, input_tokens=first.input_tokens, output_tokens=first.output_tokens,
        load=first.load, targets=first.targets, question=first.question,
        options=[o for a in answers for o in a.options], assumptions=first.assumptions,
        warnings=[w for a in answers for w in a.warnings])
    return merged, skipped
