"""Properties that must hold for every input (hypothesis)."""

from dataclasses import replace

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from planner.catalog.catalog import load_hardware, load_model
from planner.catalog.regions import GridFactor
from planner.estimators import outcome as oc
from planner.estimators.memory import memory_per_device
from planner.planning.estimate import estimate
from planner.specs import Assumptions, ParallelismSpec, TrainingSpec
from planner.specs.hardware import EfficiencyRange

MODELS = ["llama3-8b", "llama2-70b", "mixtral-8x7b", "deepseek-v2-lite", "gpt2", "olmo2-7b"]
GIB = 2**30

layouts = st.fixed_dictionaries({
    "model": st.sampled_from(MODELS),
    "tp": st.sampled_from([1, 2, 4]),
    "pp": st.sampled_from([1, 2, 4]),
    "cp": st.sampled_from([1, 2]),
    "dp": st.sampled_from([1, 2, 4, 8]),
    "zero": st.sampled_from([0, 1, 2, 3]),
    "recompute": st.sampled_from(["none", "selective", "full"]),
    "mb": st.sampled_from([1, 2]),
    "seq": st.sampled_from([1024, 4096]),
    "flash": st.booleans(),
})


def _mem(d, **over):
    d = {**d, **over}
    m = load_model(d["model"])
    tp = d["tp"]
    assume(m.num_heads % tp == 0 and (m.kv_heads % tp == 0 or tp % m.kv_heads == 0))
    assume(m.num_layers % d["pp"] == 0)
    par = ParallelismSpec(devices=d["tp"] * d["pp"] * d["cp"] * d["dp"], tp=d["tp"], pp=d["pp"],
                          cp=d["cp"], zero_stage=d["zero"])
    t = TrainingSpec(tokens=1e9, seq_len=d["seq"], micro_batch_size=d["mb"],
                     global_batch_size=d["dp"] * d["mb"] * 16, recompute=d["recompute"],
                     flash_attention=d["flash"])
    return memory_per_device(m, t, par, 80 * GIB).total_bytes


@settings(max_examples=150, deadline=None)
@given(layouts, st.sampled_from(["tp", "pp", "cp", "dp"]))
def test_doubling_a_degree_never_raises_memory_per_device(d, degree):
    before = _mem(d)
    after = _mem(d, **{degree: d[degree] * 2})
    assert after <= before * (1 + 1e-9)


@settings(max_examples=100, deadline=None)
@given(layouts, st.sampled_from([("zero", 0, 3), ("recompute", "none", "full"),
                                 ("recompute", "none", "selective")]))
def test_more_sharding_or_recompute_never_raises_memory(d, change):
    key, lo, hi = change
    assert _mem(d, **{key: hi}) <= _mem(d, **{key: lo}) * (1 + 1e-9)


@settings(max_examples=60, deadline=None)
@given(layouts)
def test_longer_sequences_or_bigger_micro_batches_need_more_activation_memory(d):
    assert _mem(d, seq=d["seq"] * 2) >= _mem(d)
    assert _mem(d, mb=d["mb"] * 2) >= _mem(d)


@pytest.fixture(scope="module")
def base():
    m, hw = load_model("llama3-8b"), load_hardware("h100-sxm")
    t = TrainingSpec(tokens=1e12, seq_len=4096, global_batch_size=1024)
    par = ParallelismSpec(devices=64, zero_stage=3)
    grid = GridFactor("test", "test", 400.0, "test", 1.2, "test")
    return m, hw, t, par, grid


@settings(max_examples=50, deadline=None)
@given(st.floats(0.1, 50.0), st.floats(1.01, 5.0))
def test_cost_is_linear_in_price(base, price, k):
    m, hw, t, par, grid = base
    a = estimate(m, hw, t, par, Assumptions(price_usd_per_device_hour=price), grid)
    b = estimate(m, hw, t, par, Assumptions(price_usd_per_device_hour=price * k), grid)
    assert b.cost.total_usd == pytest.approx(a.cost.total_usd * k, rel=1e-9)
    assert b.time == a.time


@settings(max_examples=50, deadline=None)
@given(st.floats(1.0, 1000.0), st.floats(1.01, 2.0))
def test_carbon_is_linear_in_grid_intensity(base, g, k):
    m, hw, t, par, grid = base
    a = estimate(m, hw, t, par, Assumptions(), replace(grid, g_co2e_per_kwh=g))
    b = estimate(m, hw, t, par, Assumptions(), replace(grid, g_co2e_per_kwh=g * k))
    assert b.carbon.kg_co2e == pytest.approx(a.carbon.kg_co2e * k, rel=1e-9)
    assert b.energy.kwh == a.energy.kwh


@settings(max_examples=50, deadline=None)
@given(st.floats(0.05, 0.9), st.floats(0.01, 0.1))
def test_time_falls_as_efficiency_rises(base, eff, step):
    m, hw, t, par, grid = base

    def days(e):
        rng = EfficiencyRange(low=e, expected=e, high=e, source="test")
        return estimate(m, hw, t, par, Assumptions(efficiency=rng), grid).time.wall_clock_days

    assert days(eff + step) < days(eff)


@settings(max_examples=50, deadline=None)
@given(st.floats(1e9, 1e14), st.integers(1, 100_000), st.floats(0.05, 1.0),
       st.floats(0.5, 1.0), st.floats(1.0, 2.0))
def test_energy_scales_with_pue_and_time_with_devices(flops, n, eff, goodput, pue):
    secs = oc.compute_seconds(flops * 1e10, n, 1e15, eff)
    assert oc.compute_seconds(flops * 1e10, 2 * n, 1e15, eff) == pytest.approx(secs / 2)
    hours = oc.wall_clock_hours(secs, goodput) * n
    it, fac = oc.energy_kwh(hours, 1000.0, pue)
    assert fac == pytest.approx(it * pue) and fac >= it
