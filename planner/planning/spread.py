"""The batch and layout choice's share of a range (issue 13: "the low-high range of
device-hours comes from the uncertain inputs ... batch/layout choice when defaulted").

When the user leaves the global batch to the published-runs rule, the run they do may use
another batch: published runs of a size span about half to twice the rule's tokens per step
(BATCH_SPREAD_SOURCE). The layout search is run again at the rule's target x 0.5 and x 2, and
each device count's best device-hours there, over its best at the rule, widens the range.
When the search chose the layout, the layouts it counts as tied with its answer (within
`NEAR_BEST` of the best, the headroom rule) widen it too: any of them is as good an answer.

The factors multiply the range's best and worst cases (efficiency and goodput), which treats
the inputs as independent and is conservative. Cost, energy and carbon scale with
device-hours on a fixed device count, so the factors apply to all of them. No I/O.
"""

from __future__ import annotations

import copy
import dataclasses

import numpy as np

from planner.results import Assumption, Estimate, Outcome

BATCH_FACTORS = (0.5, 2.0)
BATCH_SPREAD_SOURCE = (
    "published runs use from about half to twice the rule's tokens per step (GPT-3 175B "
    "3.2M and BLOOM 176B 4M against the rule's 8M at 175B; LLaMA-1 65B and Llama 2 70B 4M on "
    "it; Llama 3 405B 4M-16M, Dubey et al. 2024 §3.4.1): the search re-run at the rule x "
    f"{BATCH_FACTORS[0]:g} and x {BATCH_FACTORS[1]:g}")
NEAR_BEST_SOURCE = ("the layouts within 1% of the best that the headroom rule counts as tied "
                    "with the answer")


def best_by_count(devices: np.ndarray, device_hours: np.ndarray) -> dict[int, float]:
    """The least device-hours at each device count (any objective ranks a fixed count alike:
    days, cost and carbon are all proportional to device-hours there)."""
    order = np.lexsort((device_hours, devices))
    n, dh = devices[order], device_hours[order]
    first = np.ones(len(n), dtype=bool)
    first[1:] = n[1:] != n[:-1]
    return {int(k): float(v) for k, v in zip(n[first], dh[first])}


def batch_factors(req, counts: list[int], base: dict[int, float],
                  search_outcomes) -> dict[int, tuple[float, float]]:
    """Per device count: (best, worst) device-hours over the batch cases, relative to the
    rule's batch (1, 1 where the batch was given or no other batch fits).

    ``search_outcomes(req, counts)`` runs the search and returns (devices, device_hours)
    arrays; the sizing module passes its own, so this module stays below it."""
    if req.batch_given:
        return {n: (1.0, 1.0) for n in base}
    ratios: dict[int, list[float]] = {n: [1.0] for n in base}
    for f in BATCH_FACTORS:
        other = copy.copy(req)
        other.training = {**req.training, "global_batch_size": max(
            1, round(req.training["global_batch_size"] * f))}
        n, dh = search_outcomes(other, counts)
        if not len(n):
            continue
        for k, v in best_by_count(n, dh).items():
            if k in ratios:
                ratios[k].append(v / base[k])
    return {k: (min(v), max(v)) for k, v in ratios.items()}


def fixed_layout_batch_factors(target: int, unit: int, base_device_hours: float,
                               device_hours_at) -> tuple[float, float]:
    """(best, worst) device-hours over the batch cases for a layout the user gave in full:
    the same layout at the rule's target x 0.5 and x 2, each rounded to a multiple of
    dp x micro-batch (``unit``), over the rule's. ``device_hours_at(batch)`` estimates it."""
    from planner.planning.defaults import round_batch

    ratios = [1.0]
    for f in BATCH_FACTORS:
        batch = int(round_batch(max(1, round(target * f)), unit))
        ratios.append(device_hours_at(batch) / base_device_hours)
    return min(ratios), max(ratios)


def near_best_factors(device_hours: np.ndarray, tied: np.ndarray,
                      chosen: float) -> tuple[float, float]:
    """(least, most) device-hours among the tied layouts over the chosen one's."""
    dh = device_hours[tied]
    return (float(dh.min()) / chosen, float(dh.max()) / chosen) if len(dh) else (1.0, 1.0)


def _scaled(o: Outcome, factor: float) -> Outcome:
    """The case with ``factor`` x its device-hours on the same devices: days, cost, energy and
    carbon scale alike, and the effective efficiency by 1 / factor."""
    return Outcome(efficiency=o.efficiency / factor, goodput=o.goodput,
                   wall_clock_days=o.wall_clock_days * factor,
                   device_hours=o.device_hours * factor, cost_usd=o.cost_usd * factor,
                   energy_kwh=o.energy_kwh * factor, kg_co2e=o.kg_co2e * factor)


def widen(est: Estimate, batch: tuple[float, float], layout: tuple[float, float]) -> Estimate:
    """The estimate with its best case x the least and its worst case x the most of the batch
    and near-best-layout factors, each listed in the assumptions (nothing when both are 1)."""
    lo, hi = min(1.0, batch[0] * layout[0]), max(1.0, batch[1] * layout[1])
    notes = []
    if batch != (1.0, 1.0):
        notes.append(Assumption(name="range_batch_spread", value=[round(x, 4) for x in batch],
                                unit="x device-hours (best, worst)", defaulted=True,
                                source=BATCH_SPREAD_SOURCE))
    if layout != (1.0, 1.0):
        notes.append(Assumption(name="range_layout_spread", value=[round(x, 4) for x in layout],
                                unit="x device-hours (best, worst)", defaulted=True,
                                source=NEAR_BEST_SOURCE))
    if not notes:
        return est
    r = est.range
    rng = dataclasses.replace(r, low=_scaled(r.low, lo), high=_scaled(r.high, hi))
    spans = est.ranges
    if spans is not None:
        best, exp, worst = spans.mfu
        fast, step, slow = spans.step_time_s  # the same work in the widened time
        spans = dataclasses.replace(spans, mfu=[best / lo, exp, worst / hi],
                                    step_time_s=[fast * lo, step, slow * hi])
    return dataclasses.replace(est, range=rng, ranges=spans,
                               assumptions=[*est.assumptions, *notes])
