"""Sizing questions answered by a layout search: which layout, on how many devices.

  devices N       the best layout on N devices (also what `planner estimate` answers when
                  a degree is not given)
  min_devices     the fewest devices on which the model trains at all
  deadline D      the fewest devices (and their best layout) that finish in D days
  budget B        the fastest plan whose expected cost stays within B USD

Candidates come from search.py and are ranked by the same outcome chain `estimate` uses
(`estimate.outcome_values`); the chosen one is re-run through `estimate.estimate()`, so a
plan's numbers are exactly those of `planner estimate` for that layout.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from planner.errors import InfeasibleError, SpecError
from planner.estimators.params import count_params
from planner.planning import spread
from planner.planning.ranges import MEMORY_SPREAD
from planner.planning.outcome_chain import (
    goodput_cases, memory_defaults_for, outcome_inputs, outcome_values,
)
from planner.planning.reliability import checkpoint_bytes_for
from planner.planning.resolve import Request, training_spec
from planner.planning.search import (
    NEAR_BEST, RISK_MARGIN, Candidates, SearchSpace, device_grid, search,
)
from planner.results import Assumption, Estimate, LayoutChoice
from planner.units import GIB
from planner.vocab import FRAMEWORKS, LAYOUT_FLAGS, OBJECTIVES, OFFLOADS, RECOMPUTE

KINDS = ("devices", "min_devices", "deadline", "budget")
RANK_KEY = {"time": "days", "cost": "cost_usd", "carbon": "kg_co2e"}
ROW_DEGREES = ("devices", "dp", "tp", "pp", "cp", "ep", "zero_stage", "micro_batch_size",
               "virtual_stages", "global_batch_size", "dp_shard", "reshard_after_forward")


@dataclass(frozen=True)
class Question:
    kind: str  # one of KINDS
    value: float | None = None  # devices, days or USD
    max_devices: int = 65536
    objective: str = "time"
    confidence: str = "expected"  # meet a deadline or budget in the expected or worst case

    def describe(self) -> str:
        if self.kind == "devices":
            return f"the best layout on {self.value:g} device" + ("s" if self.value != 1 else "")
        worst = " in the worst case" if self.confidence == "high" else ""
        if self.kind == "deadline":
            return f"the fewest devices that finish within {self.value:g} days{worst}"
        if self.kind == "budget":
            return f"the fastest plan within ${self.value:,.0f}{worst}"
        return "the fewest devices that can train the model"


def question(devices: int | None = None, deadline_days: float | None = None,
             budget_usd: float | None = None, max_devices: int = 65536,
             objective: str = "time", confidence: str = "expected") -> Question:
    """The one question asked (default: the fewest devices); more than one is an error."""
    asked = [(k, v, f) for k, v, f in (("devices", devices, "--devices"),
                                       ("deadline", deadline_days, "--deadline-days"),
                                       ("budget", budget_usd, "--budget-usd")) if v]
    if len(asked) > 1:
        raise SpecError(f"ask one question at a time, got {' and '.join(f for *_, f in asked)}")
    if devices and devices > max_devices:
        raise SpecError(f"--devices {devices} exceeds --max-devices {max_devices}")
    kind, value, _ = asked[0] if asked else ("min_devices", None, "")
    if confidence not in ("expected", "high"):
        raise SpecError(f"--confidence '{confidence}': valid: expected, high")
    if confidence == "high" and kind not in ("deadline", "budget"):
        raise SpecError("--confidence high needs --deadline-days or --budget-usd")
    return Question(kind, value, max_devices, objective, confidence)


@dataclass(frozen=True)
class PlanResult:
    question: str
    best: Estimate
    candidates: list[dict[str, Any]]
    rejected: dict[str, int]
    searched: int
    constraint: dict[str, Any] | None = None  # deadline/budget: value and met, by case
    confidence: str = "expected"

    def to_dict(self) -> dict[str, Any]:
        return {"question": self.question, "best": self.best.to_dict(),
                "candidates": self.candidates, "rejected": self.rejected,
                "searched": self.searched, "constraint": self.constraint,
                "confidence": self.confidence}


def search_space(req: Request, relax: bool = False) -> SearchSpace:
    """The search over what the user left open (``relax``: over every degree)."""
    fixed = {} if relax else req.fixed_degrees()
    schedule = req.parallel.get("pipeline_schedule")
    if relax and schedule in ("1f1b", "gpipe"):
        fixed["virtual_stages"] = 1
    par = req.parallel
    return SearchSpace(fixed=fixed, sequence_parallel=par.get("sequence_parallel"),
                       gpipe=schedule == "gpipe",
                       dp_comm_overlap=par.get("dp_comm_overlap", True),
                       tp_comm_overlap=par.get("tp_comm_overlap", False),
                       framework=FRAMEWORKS.index(par.get("framework") or "generic"),
                       offload=OFFLOADS.index(par.get("offload") or "none"))


def _search(req: Request, counts: list[int], relax: bool = False) -> Candidates:
    return search(req.model, training_spec(req), req.hw, counts, search_space(req, relax),
                  req.batch_given, req.perf, memory_defaults_for(req.assumptions))


def outcomes(req: Request, c: Candidates) -> dict[str, np.ndarray]:
    """Expected days, device-hours, cost, energy and carbon of every candidate, through the
    outcome chain `estimate` reports (efficiency: the step-time model's, or the fixed or
    calibrated one, exactly as `estimate` takes it)."""
    a = c.arrays
    t = training_spec(req)
    peak = req.hw.peak_flops_per_s(t.precision)
    tokens_step = a["global_batch_size"] * t.seq_len
    eff = (a["hw_flops_per_token"] * tokens_step / (a["step_s"] * a["devices"] * peak)
           if req.assumptions.efficiency is None else
           np.full(len(c), req.assumptions.efficiency.expected))
    ckpt = checkpoint_bytes_for(req.model, count_params(req.model).total, t)
    goodput = np.asarray(goodput_cases(a["devices"], req.assumptions, ckpt)[1]) * np.ones(len(c))
    inp = outcome_inputs(req.hw, req.assumptions, req.grid)
    return outcome_values(a["hw_flops_per_token"] * req.tokens, a["devices"], peak, eff,
                          goodput, inp)


def _ranking_outcomes(req: Request, c: Candidates, out: dict[str, np.ndarray],
                      idx: np.ndarray, key: str) -> dict[str, np.ndarray]:
    """The outcomes layouts are ranked by: the answer's own. Under a flat --efficiency every
    layout without recompute ties (days follow executed FLOPs alone), and the tie went to
    the most memory headroom (tp 8 x cp 8 for an 8B on 64 GPUs, 4% HFU by the model;
    review): there the step-time model breaks the ties within NEAR_BEST of the best, and the
    rest stay in the flat order behind them (a recomputing layout is slower at any flat
    efficiency, whatever the model says of it)."""
    if req.assumptions.efficiency is None or not len(idx):
        return out
    model = outcomes(replace(req, assumptions=req.assumptions.model_copy(
        update={"efficiency": None})), c)
    best = out[key][idx].min()
    near = out[key] <= best * (1 + NEAR_BEST)
    m = model[key] / model[key][idx][near[idx]].min() * best  # the model's best at the best
    rest = out[key] + m[idx][near[idx]].max() * (1 + 2 * NEAR_BEST)  # behind every tie
    return {**out, key: np.where(near, m, rest)}


def _deadline_batch(req: Request, q: Question, worst_days: np.ndarray, n: np.ndarray,
                    base: dict[int, float]) -> dict[int, tuple[float, float]]:
    """The batch spread of the device counts a worst-case deadline needs: the worst case
    without it is a lower bound (the spread's worst factor is >= 1), so only the counts that
    meet the deadline there are tried, fewest first, until one still meets it."""
    found: dict[int, tuple[float, float]] = {}
    for count in sorted({int(c) for c in n[worst_days <= q.value]}):
        found.update(spread.batch_factors(req, [count], {count: base[count]}, _device_hours))
        if worst_days[n == count].min() * found[count][1] <= q.value:
            break
    return found


def _device_hours(req: Request, counts: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """(devices, expected device-hours) of every candidate the search finds for ``req``."""
    c = _search(req, counts)
    if not len(c):
        return np.zeros(0, dtype=int), np.zeros(0)
    return c.arrays["devices"], outcomes(req, c)["device_hours"]


def _select(q: Question, c: Candidates, out: dict[str, np.ndarray], hw_name: str,
            case: str = "") -> np.ndarray:
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
                f"{q.value:g} days{case}; the fastest takes {out['days'][i]:.1f} days on "
                f"{int(n[i])} devices (raise --max-devices or the deadline)")
        return np.nonzero(ok & (n == n[ok].min()))[0]
    ok = out["cost_usd"] <= q.value
    if not ok.any():
        i = int(out["cost_usd"].argmin())
        raise InfeasibleError(
            f"no plan on {hw_name} fits a budget of ${q.value:,.0f}{case}; the cheapest costs "
            f"${out['cost_usd'][i]:,.0f} on {int(n[i])} devices ({out['days'][i]:.1f} days)")
    return np.nonzero(ok)[0]


# NEAR_BEST: layouts within 1% of the best on the objective count as tied. RISK_MARGIN: a
# layout whose memory's high case (MEMORY_SPREAD over the prediction) overflows the device
# yields to one that fits it within 5%: the step-time model's held-out error on the NeMo,
# torchtitan and IBM A100 rows is within 5-10% (docs/validation.md). Both live in search.py,
# whose refinement must reach every layout these windows can pick.


def headroom_order(idx: np.ndarray, key: np.ndarray, days: np.ndarray, memory: np.ndarray,
                   capacity: float | None = None) -> np.ndarray:
    """``idx`` ranked by the objective, except that the layouts within NEAR_BEST (1%) of the
    best come first, least memory (most headroom) first: a layout 0.5% faster at 78 of 80 GiB
    is not worth the out-of-memory risk over one at 65 GiB (the step-time model's own error is
    larger than 1%). With ``capacity``: when every tied layout is at risk (its memory + 5%
    does not fit) and a layout within RISK_MARGIN (5%) is not, the safe layouts within that
    margin come first instead, fastest first."""
    k = key[idx]
    near = k <= k.min() * (1 + NEAR_BEST)
    if capacity is not None:
        safe = memory[idx] * (1 + MEMORY_SPREAD) <= capacity
        margin = safe & (k <= k.min() * (1 + RISK_MARGIN))
        if not (near & safe).any() and margin.any():
            return idx[np.lexsort((memory[idx], days[idx], k, ~margin))]
    return idx[np.lexsort((days[idx], k, memory[idx] * near, ~near))]


def answer(req: Request, q: Question, top: int = 10) -> PlanResult:
    """Search layouts and answer a sizing question with the best plan."""
    if q.kind not in KINDS:
        raise SpecError(f"unknown sizing question '{q.kind}'; valid: {', '.join(KINDS)}")
    if q.objective not in OBJECTIVES:
        raise SpecError(f"unknown objective '{q.objective}'; valid: {', '.join(OBJECTIVES)}")
    training = training_spec(req)
    if req.hw.peak_flops_per_s(training.precision) is None:
        raise SpecError(f"{req.hw.name} has no {training.precision} peak; valid precisions: "
                        f"{', '.join(req.hw.supported_precisions)}")
    node = int(req.hw.devices_per_node.value)
    counts = ([int(q.value)] if q.kind == "devices" else device_grid(node, q.max_devices))
    from planner.planning.no_fit import check_given, no_fit_message

    check_given(req, int(q.value) if q.kind == "devices" else None)
    cands = _search(req, counts)
    if not len(cands):
        raise InfeasibleError(no_fit_message(req, q, counts, cands))
    out = outcomes(req, cands)
    n = cands.arrays["devices"]
    base = spread.best_by_count(n, out["device_hours"])
    batch = None
    if q.confidence == "high":  # the constraint must hold in the worst case
        from planner.planning.confidence import with_batch_spread, worst_case_outcomes
        worst = worst_case_outcomes(req, cands, training)
        batch = (_deadline_batch(req, q, worst["days"], n, base) if q.kind == "deadline"
                 else spread.batch_factors(req, counts, base, _device_hours))
        idx = _select(q, cands, with_batch_spread(worst, n, batch), req.hw.name,
                      " in the worst case")
    else:
        idx = _select(q, cands, out, req.hw.name)
    key = RANK_KEY[q.objective] if q.kind != "budget" else "days"
    rank = _ranking_outcomes(req, cands, out, idx, key)
    order = headroom_order(idx, rank[key], out["days"], cands.arrays["memory_bytes"],
                           req.hw.memory_bytes)
    rows = [_row(cands, out, int(i)) for i in order[:max(top, 1)]]
    fixed = req.fixed_degrees()
    choice = LayoutChoice(
        given=req.given_degrees(),
        chosen=[k for k in LAYOUT_FLAGS if k not in fixed], question=q.describe(),
        objective=q.objective if q.kind != "budget" else "time", searched=cands.searched,
        fitting=len(idx), alternatives=rows[1:top])
    from planner.planning.answer import estimate_at

    best = estimate_at(req, rows[0], choice, note=Assumption(
        name="question", value=q.describe(), unit="", defaulted=False,
        source=f"layout search over {cands.searched:,} candidates, ranked by {q.objective}"))
    chosen = int(n[order[0]])
    if batch is None:  # only the chosen count's batch spread is needed
        batch = spread.batch_factors(req, [chosen], {chosen: base[chosen]}, _device_hours)
    tied = order[(rank[key][order] <= rank[key][order[0]] * (1 + NEAR_BEST))
                 & (n[order] == chosen)]
    best = spread.widen(best, batch.get(chosen, (1.0, 1.0)),
                        spread.near_best_factors(out["device_hours"], tied,
                                                 float(out["device_hours"][order[0]])))
    if q.kind == "min_devices":
        best = _years_warning(best, cands, out)
    con = None
    if q.kind in ("deadline", "budget"):
        from planner.planning.confidence import constraint_cases
        con = constraint_cases(q.kind, q.value, best)
    return PlanResult(q.describe(), best, rows[:top], cands.rejected, cands.searched, con,
                      q.confidence)


SANE_DAYS = 90.0  # what --min-devices suggests when the fewest devices train for years


def _years_warning(best: Estimate, c: Candidates, out: dict) -> Estimate:
    """--min-devices answers can train for years: say so, and name the fewest devices (of
    those searched) that finish in SANE_DAYS."""
    days = best.time.wall_clock_days
    if days <= 365:
        return best
    n, ok = c.arrays["devices"], out["days"] <= SANE_DAYS
    hint = (f"; {int(n[ok].min()):,} devices finish in {SANE_DAYS:g} days "
            f"(--deadline-days {SANE_DAYS:g})" if ok.any() else
            f"; no device count searched finishes in {SANE_DAYS:g} days")
    warning = (f"the fewest devices that fit ({best.layout.devices:,}) train for "
               f"{days / 365.25:,.1f} years{hint}")
    import dataclasses
    return dataclasses.replace(best, warnings=[warning, *best.warnings])


def _row_from(arrays_row: dict[str, Any]) -> dict[str, Any]:
    row = {k: int(arrays_row[k]) for k in ROW_DEGREES}
    row["recompute"] = RECOMPUTE[int(arrays_row["recompute"])]
    return row


def _row(c: Candidates, out: dict, i: int) -> dict[str, Any]:
    a = c.arrays
    row = _row_from({k: a[k][i] for k in (*ROW_DEGREES, "recompute")})
    row.update(memory_gib=round(float(a["memory_bytes"][i]) / GIB, 1),
               step_s=round(float(a["step_s"][i]), 3), mfu=round(float(a["mfu"][i]), 4),
               **{k: float(v[i]) for k, v in out.items()})
    return row


def closest_row(req: Request, devices: int) -> dict[str, Any]:
    """The smallest-memory layout on ``devices`` with the user's degrees (it may not fit)."""
    c = _search(req, [devices])
    if c.closest is None:
        raise InfeasibleError(f"no valid layout of {req.model.name} on {devices} devices")
    return _row_from(c.closest)
