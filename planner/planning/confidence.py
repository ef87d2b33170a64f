"""Planning at a confidence level: which candidates meet a deadline or budget in the expected
case or in the worst ("high") case, and in which cases the chosen plan meets it.

The worst case is the estimate's own `high` column: the low efficiency (the profile's spread
around the performance model, or the user's low) with the failure model's low goodput."""

from __future__ import annotations

from typing import Any

import numpy as np

from planner.planning.outcome_chain import goodput_cases, outcome_inputs, outcome_values
from planner.planning.ranges import worst_efficiency
from planner.planning.reliability import checkpoint_bytes_for
from planner.estimators.params import count_params

CONFIDENCES = ("expected", "high")


def worst_case_outcomes(req, c, training) -> dict[str, np.ndarray]:
    """Days, device-hours, cost, energy and carbon of every candidate in the worst case: the
    same chain `estimate` runs for its `high` column, before the batch spread
    (with_batch_spread)."""
    a = c.arrays
    peak = req.hw.peak_flops_per_s(training.precision)
    user = req.assumptions
    if user.efficiency is None:
        prof = req.hw.efficiency
        predicted = a["hw_flops_per_token"] * a["global_batch_size"] * training.seq_len / (
            a["step_s"] * a["devices"] * peak)
        eff = worst_efficiency(predicted, prof.low, prof.expected)
    else:
        eff = np.full(len(c), user.efficiency.low)
    ckpt = checkpoint_bytes_for(req.model, count_params(req.model).total, training)
    goodput = np.asarray(goodput_cases(a["devices"], user, ckpt)[0]) * np.ones(len(c))
    return outcome_values(a["hw_flops_per_token"] * req.tokens, a["devices"], peak, eff,
                          goodput, outcome_inputs(req.hw, user, req.grid))


def with_batch_spread(out: dict[str, np.ndarray], devices: np.ndarray,
                      batch: dict[int, tuple[float, float]]) -> dict[str, np.ndarray]:
    """Worst-case outcomes x the batch spread's worst factor of each candidate's device count
    (device count -> (best, worst), planning/spread.py): all of them are proportional to
    device-hours on a fixed count."""
    worst = np.array([max(1.0, batch.get(int(n), (1.0, 1.0))[1]) for n in devices])
    return {k: v * worst for k, v in out.items()}


def constraint_cases(kind: str, limit: float, est) -> dict[str, Any]:
    """For a deadline (days) or budget (USD): the value in each case of the chosen plan's range
    and whether it meets the limit there."""
    key = "wall_clock_days" if kind == "deadline" else "cost_usd"
    cases = {name: getattr(getattr(est.range, name), key) for name in ("low", "expected", "high")}
    return {"kind": kind, "limit": limit, "values": cases,
            "met": {name: v <= limit for name, v in cases.items()}}
