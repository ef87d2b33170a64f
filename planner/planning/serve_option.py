"""A serve candidate as the answer shows it: latency ranges, rates, $ per million tokens per
price tier, Wh and g CO2e per million tokens (docs/commands/serve.md, "Money and carbon")."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from planner.estimators.serving import ServeConfig
from planner.planning.outcome_chain import price_quote
from planner.planning.serve_point import steady_state
from planner.planning.serve_queue import replicas_for_capacity, slot_wait_s
from planner.results_serving import ServeCost, ServeOption, Spread, StepParts
from planner.specs import HardwareProfile

if TYPE_CHECKING:
    from planner.planning.serve import _Candidate
    from planner.planning.serve_request import ServeQuestion

SECONDS_PER_DAY = 86400.0


def _spread(q: ServeQuestion, hw: HardwareProfile, cfg: ServeConfig, batch: int,
            replicas: int):
    """(TTFT, TPOT, the expected case's slot wait, the worst case's replicas if it cannot
    carry the load). A case whose capacity is below the load has no stable queue: its TTFT
    takes the expected case's wait, and the answer warns."""
    pts = [steady_state(q.model, hw, cfg, q.lengths, batch, q.perf, case, q.opts)
           for case in (0, 1, 2)]
    waits = [slot_wait_s(q, p, replicas) for p in pts]
    short = None
    if math.isinf(waits[2]):
        short = replicas_for_capacity(q, pts[2])
        waits[2] = waits[1]
    ttft = Spread(*(p.ttft_s + w for p, w in zip(pts, waits)))
    return ttft, Spread(*(p.tpot_s for p in pts)), waits[1], short


def option(q: ServeQuestion, hw: HardwareProfile, c: _Candidate, inp, searched: int,
            fitting: int) -> ServeOption:
    cfg = ServeConfig(q.precision, q.kv_precision, c.layout)
    ttft, tpot, wait, short = _spread(q, hw, cfg, c.batch, c.replicas)
    it = c.point.iteration
    n_in, n_out = q.lengths
    out_tps = c.point.output_tokens_per_s
    in_tps = out_tps * n_in / n_out
    util = _utilization(q, c)
    money = _costs(q, hw, c, inp, out_tps, in_tps, util)
    fleet_w = inp.power_w * inp.energy_pue * c.devices  # the scope's power (PUE: facility)
    tokens_s = (out_tps + in_tps) * c.replicas * util
    wh_per_m = fleet_w / tokens_s * 1e6 / 3600.0
    step = StepParts(iteration_s=it.total_s, weights_s=it.weights_s, kv_s=it.kv_s,
                     decode_compute_s=it.decode_compute_s, prefill_s=it.prefill_s,
                     comm_s=it.comm_s, overhead_s=it.overhead_s, draft_s=it.draft_s,
                     tokens_per_step=c.point.tokens_per_step, bound="memory" if it.weights_s + it.kv_s >= it.decode_compute_s
                     else "compute")
    return ServeOption(
        hardware=hw.name, precision=q.precision, kv_precision=q.kv_precision,
        tp=c.layout.tp, pp=c.layout.pp, ep=c.layout.ep, devices_per_replica=c.layout.devices,
        replicas=c.replicas, devices=c.devices, batch=c.batch, limited_by=c.limited_by,
        ttft_s=ttft, tpot_s=tpot, ttft_queue_s=wait, worst_case_replicas=short,
        output_tokens_per_s_per_replica=out_tps,
        output_tokens_per_s_per_device=out_tps / c.layout.devices,
        input_tokens_per_s_per_replica=in_tps, requests_per_s_per_replica=out_tps / n_out,
        utilization=util, memory=c.memory, step=step, costs=money,
        energy_wh_per_m_tokens=wh_per_m,
        g_co2e_per_m_tokens=wh_per_m / 1000.0 * inp.grid_g_co2e_per_kwh,
        power_per_device_w=inp.power_w, layouts_searched=searched, layouts_fitting=fitting)


def _utilization(q: ServeQuestion, c: _Candidate) -> float:
    """The load's share of the fleet's capacity (1 when sized for no load or for devices)."""
    if q.load is None or q.devices is not None:
        return 1.0
    kind, value = q.load
    inp, out = q.lengths
    if kind == "concurrency":
        return value / (c.replicas * c.batch)
    rate = value if kind == "rate" else value / SECONDS_PER_DAY / (inp + out)
    return rate / (c.replicas * c.point.output_tokens_per_s / out)


def _costs(q: ServeQuestion, hw: HardwareProfile, c: _Candidate, inp, out_tps: float,
           in_tps: float, util: float) -> list[ServeCost]:
    """$ per million tokens for the chosen tier, then the profile's other tiers. An
    iteration's cost splits between input and output by its prefill and decode time."""
    it = c.point.iteration
    share_in = it.prefill_s / it.total_s
    tiers = [(inp.tier, inp.price_usd_per_device_hour)]
    if q.assumptions.price_usd_per_device_hour is None:
        tiers += [(t, price_quote(hw, q.assumptions.model_copy(update={"price_tier": t}))[0])
                  for t in hw.price_tiers if t != inp.tier]
    out = []
    for tier, price in tiers:
        usd_s = price * c.layout.devices / 3600.0 / util
        out.append(ServeCost(
            tier=tier, usd_per_device_hour=price,
            usd_per_m_input_tokens=usd_s * share_in / in_tps * 1e6,
            usd_per_m_output_tokens=usd_s * (1 - share_in) / out_tps * 1e6,
            usd_per_m_tokens=usd_s / (in_tps + out_tps) * 1e6))
    return out
