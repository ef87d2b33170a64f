"""TTFT with queueing: the wait for a batch slot at the load's arrival rate (no I/O).

Each replica is an M/D/c queue (planner/estimators/serving_queue.py): c = its batch, each
request holding a slot for output x TPOT, Poisson arrivals at the load's rate / replicas.
Only a rate (--rate, --tokens-per-day) has arrivals; --concurrency holds a fixed number of
requests in flight (no queue beyond the slots) and --devices / no load ask for capacity.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from planner.estimators.serving_queue import median_wait_s
from planner.planning.serve_point import Point

if TYPE_CHECKING:
    from planner.planning.serve_request import ServeQuestion

SECONDS_PER_DAY = 86400.0
QUEUE_SOURCE = ("M/D/c per replica (c = batch slots, each held output x TPOT; Poisson "
                "arrivals at the load's rate / replicas): Allen-Cunneen wait C(c, a) / "
                "(c mu - lambda) x 1/2, median 0 while C <= 1/2 else its ln(2C) x that "
                "(planner/estimators/serving_queue.py); only --rate and --tokens-per-day "
                "have arrivals")


def arrival_rate(q: ServeQuestion) -> float | None:
    """Requests per second the load brings (None without an arrival rate)."""
    if q.load is None or q.devices is not None or q.load[0] == "concurrency":
        return None
    kind, value = q.load
    return value if kind == "rate" else value / SECONDS_PER_DAY / sum(q.lengths)


def slot_wait_s(q: ServeQuestion, p: Point, replicas: int) -> float:
    """Median wait for a slot at this point with the load over ``replicas`` (inf when the
    load reaches the replicas' capacity; 0 without an arrival rate)."""
    rate = arrival_rate(q)
    if rate is None:
        return 0.0
    return median_wait_s(p.batch, rate / replicas, q.lengths[1] * p.tpot_s)


def replicas_for_ttft(q: ServeQuestion, p: Point, replicas: int) -> int:
    """The fewest replicas, from ``replicas`` up, whose TTFT p50 with queueing meets
    --ttft-p50 (the batch already meets it without a queue, so adding replicas ends: the
    wait is 0 once at most half of the requests wait)."""
    target = q.targets[0]
    if target is None or arrival_rate(q) is None:
        return replicas

    def meets(r: int) -> bool:
        return p.ttft_s + slot_wait_s(q, p, r) <= target

    if meets(replicas):
        return replicas
    # the wait falls as replicas grow: double past the answer, then bisect (one replica at a
    # time took minutes for a load of a billion requests/s)
    fails, ok = replicas, 2 * replicas
    while not meets(ok):
        fails, ok = ok, 2 * ok
    while ok - fails > 1:
        mid = (fails + ok) // 2
        fails, ok = (fails, mid) if meets(mid) else (mid, ok)
    return ok


def replicas_for_capacity(q: ServeQuestion, p: Point) -> int | None:
    """Replicas whose capacity at this point exceeds the load's arrival rate (a queue is
    stable only below capacity); None without an arrival rate."""
    rate = arrival_rate(q)
    if rate is None:
        return None
    capacity = p.output_tokens_per_s / q.lengths[1]  # requests per second per replica
    return math.floor(rate / capacity) + 1
