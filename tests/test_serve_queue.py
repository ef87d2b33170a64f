"""TTFT with queueing: M/D/c per replica (Allen-Cunneen), against Erlang's formula written
out, the Pollaczek-Khinchine M/D/1 mean, and the CLI near capacity."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from planner.cli import cli
from planner.estimators.serving_queue import erlang_c, mean_wait_s, median_wait_s


def _erlang_c_direct(c: int, a: float) -> float:
    """Erlang C for M/M/c written out as the textbooks give it (Kleinrock 1975, Queueing
    Systems Vol. 1, the M/M/m queue)."""
    top = a ** c / math.factorial(c) * c / (c - a)
    return top / (sum(a ** k / math.factorial(k) for k in range(c)) + top)


def test_erlang_c_by_hand():
    assert erlang_c(1, 0.7) == pytest.approx(0.7)  # M/M/1: P(wait) = rho
    assert erlang_c(2, 1.0) == pytest.approx(1 / 3)  # B(2, 1) = 0.2; 2 x 0.2 / (2 - 0.8)
    for c, a in ((10, 8.0), (30, 27.5), (60, 40.0)):
        assert erlang_c(c, a) == pytest.approx(_erlang_c_direct(c, a), rel=1e-9)
    assert erlang_c(4, 4.0) == 1.0 and erlang_c(4, 0.0) == 0.0


def test_md1_is_pollaczek_khinchine():
    # M/D/1: W_q = rho D / (2 (1 - rho)); lambda 8/s, D 0.1 s: rho 0.8, 0.2 s
    assert mean_wait_s(1, 8.0, 0.1) == pytest.approx(0.8 * 0.1 / (2 * 0.2))
    # median: P(wait) = 0.8 > 1/2, so m ln(1.6) with m = 0.5 / (10 - 8)
    assert median_wait_s(1, 8.0, 0.1) == pytest.approx(0.25 * math.log(1.6))
    assert median_wait_s(1, 4.0, 0.1) == 0.0  # fewer than half wait
    assert math.isinf(median_wait_s(1, 10.0, 0.1))  # at capacity


@settings(max_examples=50, deadline=None)
@given(c=st.integers(1, 512), rho=st.floats(0.01, 0.98), more=st.floats(0.001, 0.5))
def test_wait_grows_with_the_rate(c, rho, more):
    service = 20.0
    lam = rho * c / service
    lam2 = min(rho + more, 0.999) * c / service
    assert median_wait_s(c, lam2, service) >= median_wait_s(c, lam, service)
    assert mean_wait_s(c, lam2, service) >= mean_wait_s(c, lam, service)


BASE = ["serve", "--model", "llama3-70b", "--hardware", "h100-sxm", "--input-tokens", "1000",
        "--output-tokens", "500", "--tpot", "40ms", "--precision", "fp8", "--kv-precision",
        "fp8", "--tp", "4", "--format", "json"]


def _option(runner, *args):
    res = runner.invoke(cli, [*BASE, *args])
    assert res.exit_code == 0, res.stderr
    d = json.loads(res.stdout)
    return d, d["options"][0]


def test_ttft_grows_near_capacity(runner):
    _, low = _option(runner, "--rate", "3/s")
    d, near = _option(runner, "--rate", "12.3/s")
    assert low["replicas"] == near["replicas"] == 1
    assert low["ttft_queue_s"] == 0.0
    assert near["utilization"] > 0.98 and near["ttft_queue_s"] > 1.0
    assert near["ttft_s"]["expected"] == pytest.approx(low["ttft_s"]["expected"]
                                                       + near["ttft_queue_s"])
    assert any("waits" in w for w in d["warnings"])
    assert any("worst case" in w for w in d["warnings"])  # 70% HBM cannot carry 99% load


def test_replicas_for_a_ttft_target_count_the_queue(runner):
    _, plain = _option(runner, "--rate", "12.3/s")
    _, sized = _option(runner, "--rate", "12.3/s", "--ttft-p50", "200ms")
    assert sized["replicas"] > plain["replicas"]
    assert sized["ttft_s"]["expected"] <= 0.2
    assert plain["ttft_s"]["expected"] > 0.2  # the queue alone broke the target


def test_no_arrival_rate_no_queue(runner):
    _, conc = _option(runner, "--concurrency", "200")
    _, one = _option(runner)
    assert conc["ttft_queue_s"] == one["ttft_queue_s"] == 0.0
