"""Queueing before admission: how long a request waits for a free batch slot (pure functions).

A replica under continuous batching holds ``batch`` sequences; each occupies its slot for
output x TPOT seconds (deterministic: ISL/OSL are fixed), and requests arrive as a Poisson
stream. That is an M/D/c queue with c = batch. Its waiting time comes from the Allen-Cunneen
approximation for GI/G/c (Allen, "Probability, Statistics and Queueing Theory", 2nd ed. 1990;
checked by Whitt 1993, "Approximations for the GI/G/m queue"):

    W_q ~= C(c, a) / (c mu - lambda) x (c_a^2 + c_s^2) / 2
    a = lambda / mu, c_a^2 = 1 (Poisson arrivals), c_s^2 = 0 (deterministic service)

with C(c, a) Erlang's C formula (the probability a request waits). For c = 1 it is exactly the
Pollaczek-Khinchine mean of M/D/1, rho / (2 mu (1 - rho)). The median uses the M/M/c shape of
the wait, P(W_q > t) = C exp(-t / m) with m the mean wait of a request that does wait
(1 / (c mu - lambda) x 1/2): zero when C <= 1/2, else m ln(2C).
"""

from __future__ import annotations

import math

DETERMINISTIC_FACTOR = 0.5  # (c_a^2 + c_s^2) / 2 with Poisson arrivals, fixed service times


def erlang_c(servers: int, offered_load: float) -> float:
    """Erlang C: the probability an arrival waits in M/M/c with ``offered_load`` = lambda / mu
    erlangs on ``servers`` servers (1 when the load reaches the servers). Through Erlang B's
    recursion B_k = a B_{k-1} / (k + a B_{k-1}), stable for thousands of servers."""
    c, a = servers, offered_load
    if a <= 0:
        return 0.0
    if a >= c:
        return 1.0
    b = 1.0
    for k in range(1, c + 1):
        b = a * b / (k + a * b)
    return c * b / (c - a * (1.0 - b))


def conditional_wait_s(servers: int, arrival_per_s: float, service_s: float) -> float:
    """Mean wait of a request that waits at all: (c_a^2 + c_s^2)/2 / (c mu - lambda)."""
    spare = servers / service_s - arrival_per_s
    return math.inf if spare <= 0 else DETERMINISTIC_FACTOR / spare


def mean_wait_s(servers: int, arrival_per_s: float, service_s: float) -> float:
    """Mean wait for a slot in M/D/c (Allen-Cunneen); inf at or beyond capacity."""
    c = erlang_c(servers, arrival_per_s * service_s)
    return c * conditional_wait_s(servers, arrival_per_s, service_s)


def median_wait_s(servers: int, arrival_per_s: float, service_s: float) -> float:
    """Median wait for a slot: 0 while at most half of the requests wait, else
    m ln(2 C); inf at or beyond capacity."""
    c = erlang_c(servers, arrival_per_s * service_s)
    if c <= 0.5:
        return 0.0
    return conditional_wait_s(servers, arrival_per_s, service_s) * math.log(2.0 * c)
