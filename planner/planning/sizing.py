"""Sizing questions answered by a layout search: which layout, on how many devices.

  devices N       the best layout on N devices
  min_devices     the fewest devices on which the model trains at all
  deadline D      the fewest devices (and their best layout) that finish in D days
  budget B        the fastest plan whose expected cost stays within B USD

Candidates come from search.py; the chosen one is re-run through plan.estimate(), so the
plan's numbers are exactly those of `planner estimate` for that layout.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from planner.planning import defaults

from planner.planning.resolve import Request, apply_calibration
from planner.catalog.regions import world_average
from planner.errors import InfeasibleError, SpecError
from planner.estimators import outcome as oc
from planner.planning.estimate import PERF, device_power_w, estimate, memory_defaults_for, price_quote
from planner.results import Assumption, Estimate
from planner.planning.search import RECOMPUTE_NAMES, Candidates, SearchSpace, device_grid, search
from planner.specs import ParallelismSpec, TrainingSpec

OBJECTIVES = {"time": "days", "cost": "cost_usd", "carbon": "kg_co2e"}
KINDS = ("devices", "min_devices", "deadline", "budget")
_FIXED = {"tp": "tp", "pp": "pp", "cp": "cp", "ep": "ep", "zero_stage": "zero",
          "micro_batch_size": "mb", "virtual_stages": "v"}


@dataclass(frozen=True)
class Question:
    kind: str  # one of KINDS
    value: float | None = None  # devices, days or USD
    max_devices: int = 65536
    objective: str = "time"

    def describe(self) -> str:
        if self.kind == "devices":
            return f"the best layout on {self.value:g} device" + ("s" if self.value != 1 else "")
        if self.kind == "deadline":
            return f"the fewest devices that finish within {self.value:g} days"
        if self.kind == "budget":
            return f"the fastest plan within ${self.value:,.0f}"
        return "the fewest devices that can train the model"


@dataclass(frozen=True)
class PlanResult:
    question: str
    best: Estimate
    candidates: list[dict[str, Any]]
    rejected: dict[str, int]
    searched: int

    def to_dict(self) -> dict[str, Any]:
        return {"question": self.question, "best": self.best.to_dict(),
                "candidates": self.candidates, "rejected": self.rejected,
                "searched": self.searched}


def _space(req: Request) -> SearchSpace:
    fixed = {_FIXED[k]: v for k, v in req.parallel.items() if k in _FIXED}
    if req.training.get("micro_batch_size"):
        fixed["mb"] = req.training["micro_batch_size"]
    if req.training.get("recompute"):
        fixed["recompute"] = RECOMPUTE_NAMES.index(req.training["recompute"])
    schedule = req.parallel.get("pipeline_schedule")
    if schedule in ("1f1b", "gpipe"):
        fixed["v"] = 1
    return SearchSpace(fixed=fixed, sequence_parallel=req.parallel.get("sequence_parallel"),
                       gpipe=schedule == "gpipe")


def _base_training(req: Request) -> tuple[TrainingSpec, bool, list[Assumption]]:
    train = {k: v for k, v in req.training.items() if k not in ("micro_batch_size", "recompute")}
    notes = []
    fixed_batch = train.get("global_batch_size") is not None
    if not fixed_batch:
        train["global_batch_size"], note = defaults.default_global_batch(train["seq_len"], 1, 1)
        notes.append(Assumption(name="global_batch_size", value="about "
                                f"{train['global_batch_size']} sequences", unit="sequences",
                                source=note.source, defaulted=True))
    try:
        return TrainingSpec(tokens=req.tokens, **train), fixed_batch, notes
    except ValueError as e:
        raise SpecError(f"training: {e}") from None


def _outcomes(req: Request, c: Candidates, training: TrainingSpec) -> dict[str, np.ndarray]:
    """Wall-clock days, device-hours, cost, energy and carbon for every candidate.

    Compute time comes from the step-time model, or from the efficiency the user (or a
    calibration) fixed, exactly as `planner estimate` computes it for one layout."""
    a = c.arrays
    user = req.assumptions
    goodput = np.array([user.goodput_expected or oc.default_goodput(int(n))[1]
                        for n in a["devices"]]) if len(c) else np.zeros(0)
    compute_days = a["training_days"]
    if user.efficiency is not None:
        peak = req.hw.peak_flops_per_s(training.precision)
        compute_days = a["hw_flops_per_token"] * training.tokens / (
            a["devices"] * peak * user.efficiency.expected) / 86400
    days = compute_days / np.maximum(goodput, 1e-9)
    device_hours = days * 24 * a["devices"]
    price = price_quote(req.hw, user)[0]
    grid = req.grid or world_average()
    pue = user.pue or grid.pue
    g = user.grid_g_co2e_per_kwh if user.grid_g_co2e_per_kwh is not None else grid.g_co2e_per_kwh
    kwh = device_hours * device_power_w(req.hw, user) * pue / 1000
    return {"days": days, "device_hours": device_hours, "cost_usd": device_hours * price,
            "energy_kwh": kwh, "kg_co2e": kwh * g / 1000}


def _select(q: Question, c: Candidates, out: dict[str, np.ndarray], hw_name: str) -> np.ndarray:
    """Indices of the candidates that answer the question (before ranking)."""
    n = c.arrays["devices"]
    if q.kind in ("devices", "min_devices"):
        return np.nonzero(n == n.min())[0]
    if q.kind == "deadline":
        ok = out["days"] <= q.value
        if not ok.any():
            i = int(out["days"].argmin())
            raise InfeasibleError(
                f"no plan on at most {q.max_devices} x {hw_name} finishes within "
                f"{q.value:g} days; the fastest takes {out['days'][i]:.1f} days on "
                f"{int(n[i])} devices (raise --max-devices or the deadline)")
        return np.nonzero(ok & (n == n[ok].min()))[0]
    ok = out["cost_usd"] <= q.value
    if not ok.any():
        i = int(out["cost_usd"].argmin())
        raise InfeasibleError(
            f"no plan on {hw_name} fits a budget of ${q.value:,.0f}; the cheapest costs "
            f"${out['cost_usd'][i]:,.0f} on {int(n[i])} devices ({out['days'][i]:.1f} days)")
    return np.nonzero(ok)[0]


def _no_fit_message(req: Request, q: Question, counts: list[int]) -> str:
    node = int(req.hw.devices_per_node.value)
    probe = search(req.model, _base_training(req)[0], req.hw,
                   device_grid(node, 1 << 20, min_devices=max(counts) + 1), _space(req), False,
                   PERF, memory_defaults_for(req.assumptions))
    hint = (f"; the fewest that fit: {int(probe.arrays['devices'].min())}"
            if len(probe) else "; no device count up to 1M fits: check the fixed degrees")
    where = f"{counts[0]}" if q.kind == "devices" else f"at most {q.max_devices}"
    return (f"{req.model.name} does not fit on {where} x {req.hw.name} ("
            f"{req.hw.memory_bytes / 2**30:.0f} GiB) with any layout searched{hint}")


def answer(req: Request, q: Question, top: int = 10) -> PlanResult:
    """Search layouts and answer a sizing question with the best plan."""
    if q.kind not in KINDS:
        raise SpecError(f"unknown sizing question '{q.kind}'; valid: {', '.join(KINDS)}")
    if q.objective not in OBJECTIVES:
        raise SpecError(f"unknown objective '{q.objective}'; valid: {', '.join(OBJECTIVES)}")
    training, fixed_batch, notes = _base_training(req)
    if req.hw.peak_flops_per_s(training.precision) is None:
        raise SpecError(f"{req.hw.name} has no {training.precision} peak; valid precisions: "
                        f"{', '.join(req.hw.supported_precisions)}")
    req = replace(req, assumptions=apply_calibration(req, training))
    node = int(req.hw.devices_per_node.value)
    counts = ([int(q.value)] if q.kind == "devices" else device_grid(node, q.max_devices))
    cands = search(req.model, training, req.hw, counts, _space(req), fixed_batch, PERF,
                   memory_defaults_for(req.assumptions))
    if not len(cands):
        raise InfeasibleError(_no_fit_message(req, q, counts))
    out = _outcomes(req, cands, training)
    idx = _select(q, cands, out, req.hw.name)
    key = OBJECTIVES[q.objective] if q.kind != "budget" else "days"
    order = idx[np.lexsort((out["days"][idx], out[key][idx]))]
    rows = [_row(cands, out, int(i)) for i in order[:top]]
    best = _estimate(req, training, cands, int(order[0]), notes + [Assumption(
        name="question", value=q.describe(), unit="", defaulted=False,
        source=f"layout search over {cands.searched:,} candidates, ranked by {q.objective}")])
    return PlanResult(q.describe(), best, rows, cands.rejected, cands.searched)


def _row(c: Candidates, out: dict, i: int) -> dict[str, Any]:
    a = c.arrays
    row = {k: int(a[k][i]) for k in ("devices", "dp", "tp", "pp", "cp", "ep", "zero", "mb",
                                     "v", "batch")}
    row["recompute"] = RECOMPUTE_NAMES[int(a["recompute"][i])]
    row.update(memory_gib=round(float(a["memory_bytes"][i]) / 2**30, 1),
               step_s=round(float(a["step_s"][i]), 3), mfu=round(float(a["mfu"][i]), 4),
               **{k: float(v[i]) for k, v in out.items()})
    return row


def _estimate(req: Request, training: TrainingSpec, c: Candidates, i: int,
              notes: list[Assumption]) -> Estimate:
    a = c.arrays
    v = int(a["v"][i])
    schedule = "gpipe" if req.parallel.get("pipeline_schedule") == "gpipe" else \
        ("interleaved" if v > 1 else "1f1b")
    par = ParallelismSpec(
        devices=int(a["devices"][i]), tp=int(a["tp"][i]), pp=int(a["pp"][i]),
        cp=int(a["cp"][i]), ep=int(a["ep"][i]), zero_stage=int(a["zero"][i]),
        pipeline_schedule=schedule, virtual_stages=v,
        sequence_parallel=req.parallel.get("sequence_parallel"))
    train = training.model_copy(update={
        "micro_batch_size": int(a["mb"][i]), "global_batch_size": int(a["batch"][i]),
        "recompute": RECOMPUTE_NAMES[int(a["recompute"][i])]})
    return estimate(req.model, req.hw, train, par, req.assumptions, req.grid,
                    tuple(req.notes + notes))
