"""A job's records added up without double counting: host energy once per node, GPU energy
once per device, and what is missing said out loud.

The records of one job (``job.id``) are grouped by node. A node's metering records
(``job.meters_node``: local rank 0, or any process that metered) are split into attempts:
records whose time windows overlap belong to one attempt (ranks of the same launch, or two
processes that both metered the node), records that do not overlap are separate attempts (a
run restarted after a crash), whose energy is real and is added. Within an attempt:

- host (CPU + RAM, machine-wide on that node) is taken once, from the record with the most
  host energy (the one that metered longest);
- each GPU (by UUID) is taken once, its largest reading in the attempt; a GPU figure without
  per-device readings (codecarbon's) counts as one device of that record;
- cost is taken once, the largest (device-hours are the node's, not the rank's).

Each part keeps its record's PUE and grid intensity, so facility energy and carbon are the
sums of the parts. Rank records (``meters_node`` false) carry no energy and only list ranks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from planner.measurement.results import Extrapolation
from planner.results import Result

METHOD = ("host energy once per node and GPU energy once per device (UUID) in each attempt "
          "(records with overlapping windows); attempts that do not overlap are added")


@dataclass(frozen=True)
class NodeTotal(Result):
    """One node of a job. Energy in kWh (it_kwh at the meters, kwh x PUE), kg CO2e, USD."""

    node: str
    ranks: tuple[int, ...]
    records: int
    metering_records: int
    attempts: int
    duration_s: float | None  # summed over attempts, each its longest record
    host_kwh: float | None
    gpu_kwh: float | None
    gpu_devices: int
    it_kwh: float | None
    kwh: float | None
    kg_co2e: float | None
    cost_usd: float | None
    complete: bool
    note: str | None
    devices: int | None = None  # billed devices of the node (its metering record's)
    device_hours: float | None = None  # summed over attempts


@dataclass(frozen=True)
class JobSummary(Result):
    """A job's totals over its nodes, and what is missing."""

    job: str
    scheduler: str | None
    records: int
    nodes: tuple[NodeTotal, ...]
    nodes_expected: int | None
    missing_nodes: tuple[str, ...]  # expected nodes with no metering record
    ranks_seen: int
    world_size: int | None
    missing_ranks: tuple[int, ...]
    it_kwh: float | None
    kwh: float | None
    kg_co2e: float | None
    cost_usd: float | None
    complete: bool  # every node metered, every record complete, no rank missing
    method: str
    notes: tuple[str, ...]
    # The job's sample scaled to the full run, beside planner estimate for all its devices
    # (when every metering record was given the same --tokens and --extrapolate-to).
    extrapolation: Extrapolation | None = None


def _t(text: str | None) -> float:
    return datetime.fromisoformat(text).timestamp() if text else 0.0


def _attempts(records: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Records grouped by overlapping [started_at, ended_at] windows."""
    out: list[list[dict[str, Any]]] = []
    end = None
    for rec in sorted(records, key=lambda r: (_t(r["started_at"]), r["id"])):
        start = _t(rec["started_at"])
        if out and end is not None and start < end:
            out[-1].append(rec)
            end = max(end, _t(rec["ended_at"]))
        else:
            out.append([rec])
            end = _t(rec["ended_at"])
    return out


def _host_kwh(rec: dict[str, Any]) -> float | None:
    e = rec["energy"]
    parts = [e.get("cpu_kwh"), e.get("ram_kwh")]
    known = [p for p in parts if p is not None]
    return sum(known) if known else None


def _gpu_parts(rec: dict[str, Any]) -> dict[str, float]:
    """kWh per GPU key: the UUID, or one key for a record's GPU total without devices."""
    e = rec["energy"]
    gpus = [g for g in e.get("gpus") or () if g.get("kwh") is not None]
    if gpus:
        return {g["uuid"]: g["kwh"] for g in gpus}
    if e.get("gpu_kwh"):
        return {f"{rec['id']}:gpus": e["gpu_kwh"]}
    return {}


class _Sum:
    """Running it_kwh, facility kWh and kg CO2e, None until a value is added."""

    def __init__(self) -> None:
        self.it = self.kwh = self.kg = None

    def add(self, it_kwh: float | None, rec: dict[str, Any]) -> None:
        if it_kwh is None:
            return
        pue = rec["energy"].get("pue") or 1.0
        grid = rec["carbon"].get("grid_g_co2e_per_kwh") or 0.0
        self.it = (self.it or 0.0) + it_kwh
        self.kwh = (self.kwh or 0.0) + it_kwh * pue
        self.kg = (self.kg or 0.0) + it_kwh * pue * grid / 1000.0


def _add(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else a + b


def node_total(node: str, records: list[dict[str, Any]]) -> NodeTotal:
    """One node's energy, carbon and cost without double counting (see module docstring)."""
    ranks = tuple(sorted({r["job"]["rank"] for r in records if r["job"]["rank"] is not None}))
    meters = [r for r in records if r["job"]["meters_node"]]
    total, host, gpu, cost, duration = _Sum(), None, None, None, None
    hours, devices_billed = None, None
    devices: set[str] = set()
    attempts = _attempts(meters)
    for attempt in attempts:
        best = max(attempt, key=lambda r: (_host_kwh(r) or 0.0, r["duration_s"] or 0.0))
        h = _host_kwh(best)
        total.add(h, best)
        host = _add(host, h)
        per_device: dict[str, tuple[float, dict[str, Any]]] = {}
        for rec in attempt:
            for key, kwh in _gpu_parts(rec).items():
                if key not in per_device or kwh > per_device[key][0]:
                    per_device[key] = (kwh, rec)
        for key, (kwh, rec) in per_device.items():
            total.add(kwh, rec)
            gpu = _add(gpu, kwh)
            devices.add(key)
        costs = [r["cost"]["total_usd"] for r in attempt if r["cost"].get("total_usd") is not None]
        cost = _add(cost, max(costs) if costs else None)
        duration = _add(duration, max(r["duration_s"] or 0.0 for r in attempt))
        dh = [r["cost"]["device_hours"] for r in attempt if r["cost"].get("device_hours")]
        hours = _add(hours, max(dh) if dh else None)
        devs = [r["cost"]["devices"] for r in attempt if r["cost"].get("devices")]
        devices_billed = max([devices_billed or 0, *devs]) or None
    note = None
    if not meters:
        note = "no metering record: the node's local rank 0 was lost or never ran"
    elif len(attempts) > 1:
        note = f"{len(attempts)} attempts (restarts) added"
    return NodeTotal(node, ranks, len(records), len(meters), len(attempts), duration, host, gpu,
                     len(devices), total.it, total.kwh, total.kg, cost,
                     all(r["complete"] for r in records) and bool(meters), note,
                     devices_billed, hours)


def _node_key(node: str) -> tuple[int, int | str]:
    return (0, int(node)) if node.isdigit() else (1, node)


def summarize_job(job_id: str, records: Sequence[dict[str, Any]]) -> JobSummary:
    """Totals of the job's records (those with ``job.id == job_id``)."""
    mine = [r for r in records if (r.get("job") or {}).get("id") == job_id]
    by_id = {r["id"]: r for r in mine}  # the same record twice (merged twice) counts once
    mine = list(by_id.values())
    by_node: dict[str, list[dict[str, Any]]] = {}
    for rec in mine:
        by_node.setdefault(str(rec["job"]["node"]), []).append(rec)
    nodes = tuple(node_total(n, by_node[n]) for n in sorted(by_node, key=_node_key))
    expected = max((r["job"]["num_nodes"] for r in mine if r["job"].get("num_nodes")),
                   default=None)
    metered = {n.node for n in nodes if n.metering_records}
    missing: list[str] = [n.node for n in nodes if not n.metering_records]
    if expected and all(n.node.isdigit() for n in nodes):
        missing += [str(i) for i in range(expected) if str(i) not in by_node]
    elif expected and len(metered) < expected:
        missing.append(f"{expected - len(metered)} of {expected} expected node(s), unnamed")
    world = max((r["job"]["world_size"] for r in mine if r["job"].get("world_size")),
                default=None)
    seen = {r["job"]["rank"] for r in mine if r["job"]["rank"] is not None}
    missing_ranks = tuple(i for i in range(world) if i not in seen) if world else ()
    total = {k: None for k in ("it_kwh", "kwh", "kg_co2e", "cost_usd")}
    for n in nodes:
        for k in total:
            total[k] = _add(total[k], getattr(n, k))
    notes = [f"node {n.node}: {n.note}" for n in nodes if n.note]
    incomplete = [r["id"] for r in mine if not r["complete"]]
    if incomplete:
        notes.append(f"{len(incomplete)} record(s) incomplete (crashed or interrupted): "
                     + ", ".join(sorted(incomplete)[:5]))
    scheds = {r["job"]["scheduler"] for r in mine}
    x, x_note = job_extrapolation(mine, nodes, total)
    if x_note:
        notes.append(x_note)
    return JobSummary(
        job=job_id, scheduler=scheds.pop() if len(scheds) == 1 else None, records=len(mine),
        nodes=nodes, nodes_expected=expected, missing_nodes=tuple(sorted(set(missing),
                                                                         key=_node_key)),
        ranks_seen=len(seen), world_size=world, missing_ranks=missing_ranks, **total,
        complete=not missing and not missing_ranks and not incomplete and bool(nodes),
        method=METHOD, notes=tuple(notes), extrapolation=x)


def job_extrapolation(records: list[dict[str, Any]], nodes: tuple[NodeTotal, ...],
                      total: dict[str, float | None]) -> tuple[Extrapolation | None, str | None]:
    """The whole job's sample (wall clock = its longest node, device-hours and energy summed)
    scaled by the target / measured its records agree on, beside ``planner estimate`` for the
    job's devices; (None, why) when the records were not all given the same scale."""
    from planner.measurement.extrapolate import Sample, extrapolate

    xs = [r.get("extrapolation") for r in records if r["job"]["meters_node"]]
    if not any(xs):
        return None, None
    keys = {(x["unit"], x["measured"], x["target"]) if x else None for x in xs}
    if len(keys) != 1 or None in keys:
        return None, ("no job extrapolation: the metering records were not all given the same "
                      "--tokens/--steps and --extrapolate-to (give every node the job's totals)")
    unit, measured, target = keys.pop()
    durations = [n.duration_s for n in nodes if n.duration_s is not None]
    hours = [n.device_hours for n in nodes if n.device_hours is not None]
    sample = Sample(max(durations, default=0.0), sum(hours) if hours else None, total["kwh"],
                    total["it_kwh"], total["kg_co2e"], total["cost_usd"])
    devices = sum(n.devices or 0 for n in nodes) or None
    x = extrapolate(sample, unit, measured, target,
                    _estimate(xs[0], unit, measured, target, devices))
    return x, None


def _estimate(x: dict[str, Any], unit: str, measured: float, target: float,
              devices: int | None):
    """``planner estimate`` for the job's devices with the inputs its records were given."""
    inputs = x.get("inputs") or {}
    training = inputs.get("training") or {}
    per_step = 1 if unit == "tokens" else \
        (training.get("seq_len") or 0) * (training.get("global_batch") or 0)
    if not per_step or not (inputs.get("model") and inputs.get("hardware")):
        return None  # steps without the batch and sequence length: no tokens to estimate
    from planner.measurement.compare import estimate_for
    from planner.measurement.context import MeasureOptions

    o = MeasureOptions(model=inputs["model"], hardware=inputs["hardware"],
                       region=inputs.get("region"), tokens=measured * per_step,
                       extrapolate_to=target * per_step,
                       grid_g_co2e_per_kwh=inputs.get("grid_g_co2e_per_kwh"),
                       price_tier=inputs.get("price_tier"),
                       price_per_hour=inputs.get("price_per_hour"),
                       profiles_dirs=tuple(inputs.get("profiles_dirs") or ()),
                       training=inputs.get("training"))
    return estimate_for(o, inputs.get("pue") or 1.0, devices)
