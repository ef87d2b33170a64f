"""The measurement's pure parts: extrapolation, GPU selection and sampling, method labels,
carbon/cost arithmetic and option checks, against hand-worked numbers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from measure_support import FakeGpuBackend

from planner.catalog.regions import country_iso3, grid_factor
from planner.errors import SpecError, UnknownNameError
from planner.measurement.codecarbon_meter import cpu_method, peak_w, ram_method
from planner.measurement.context import MeasureOptions, resolve_context
from planner.measurement.readings import HostReading
from planner.measurement.extrapolate import Sample, extrapolate
from planner.measurement.gpu import (
    GpuDevice,
    GpuSampler,
    gpu_component,
    integrate_j,
    visible_devices,
)
from planner.measurement.record import (
    GpuSide,
    carbon_report,
    cost_report,
    energy_report,
    gpu_part,
)
from planner.measurement.results import Component, Method
from planner.measurement.runner import exit_code_of, signals_held

DEVICES = [GpuDevice(0, "GPU-aaaa-0000", "A"), GpuDevice(1, "GPU-bbbb-1111", "B"),
           GpuDevice(2, "GPU-bbbc-2222", "C")]


def test_extrapolation_hand_worked():
    # 50M tokens in 120 s on 8 devices -> 2T tokens: scale 40,000.
    sample = Sample(duration_s=120.0, device_hours=8 * 120 / 3600, energy_kwh=0.5,
                    it_kwh=0.4, kg_co2e=0.2, cost_usd=2.0)
    x = extrapolate(sample, "tokens", 50e6, 2e12)
    assert x.scale == pytest.approx(40_000)
    assert x.throughput_per_s == pytest.approx(416_666.667, rel=1e-6)
    p = x.projected
    assert p.duration_s == pytest.approx(4.8e6)
    assert p.wall_clock_days == pytest.approx(55.5556, rel=1e-5)
    assert p.device_hours == pytest.approx(10_666.667, rel=1e-6)
    assert (p.energy_kwh, p.it_kwh, p.kg_co2e, p.cost_usd) == pytest.approx(
        (20_000, 16_000, 8_000, 80_000))
    assert "constant throughput" in x.assumption and "4.167e+05 tokens/s" in x.assumption


def test_extrapolation_keeps_unknown_cost_unknown():
    x = extrapolate(Sample(10.0, None, 1.0, 1.0, 0.1, None), "steps", 20, 1000)
    assert x.projected.cost_usd is None and x.projected.device_hours is None
    assert x.projected.energy_kwh == pytest.approx(50.0)
    with pytest.raises(ValueError):
        extrapolate(Sample(10.0, None, 1.0, 1.0, 0.1, None), "steps", 0, 1000)


@pytest.mark.parametrize("env, picked", [
    (None, [0, 1, 2]), ("", []), ("-1", []), ("2,0", [2, 0]), ("1,7,0", [1]),
    ("GPU-aaaa", [0]), ("GPU-bbb", []), ("GPU-bbbc,0", [2, 0]), ("0,0", [0]),
])
def test_visible_devices_follow_cuda_rules(env, picked):
    assert [d.index for d in visible_devices(DEVICES, env)] == picked


def test_integrate_trapezoid():
    assert integrate_j([(0.0, 100.0), (1.0, 300.0), (3.0, 300.0)]) == pytest.approx(800.0)
    assert integrate_j([(0.0, 5.0)]) == 0.0


def test_gpu_sampler_counter_and_power_paths():
    now = [100.0]
    backend = FakeGpuBackend([300.0, 200.0], [True, False], clock=lambda: now[0])
    sampler = GpuSampler(backend, backend.devices(), interval_s=60.0, clock=lambda: now[0])
    sampler.start()
    now[0] += 36.0  # 36 s at 300 W = 10.8 kJ = 0.003 kWh; at 200 W = 0.002 kWh
    counter, power = sampler.stop()
    assert counter.kwh == pytest.approx(0.003) and counter.method.kind == "measured"
    assert "energy counter" in counter.method.detail
    assert power.kwh == pytest.approx(0.002) and "power readings" in power.method.detail
    assert power.avg_power_w == pytest.approx(200.0) and power.peak_power_w == 200.0
    total = gpu_component([counter, power])
    assert total.kwh == pytest.approx(0.005) and total.avg_power_w == pytest.approx(500.0)
    assert total.method.kind == "measured" and "2 GPU(s)" in total.method.detail


def test_gpu_sampler_samples_on_its_thread():
    backend = FakeGpuBackend([250.0], [False])
    sampler = GpuSampler(backend, backend.devices(), interval_s=0.01)
    sampler.start()
    import time
    time.sleep(0.15)
    (g,) = sampler.stop()
    assert len(sampler._samples[0]) >= 5
    assert g.avg_power_w == pytest.approx(250.0, rel=0.05)


class CPU:  # named like codecarbon's classes, which is what the detection reads
    def __init__(self, mode, tdp=8, model="AMD EPYC", generic=False):
        self._mode, self._tdp, self._model, self._is_generic_tdp = mode, tdp, model, generic


class RAM:
    pass


class Raspberry:
    def __init__(self, part):
        self.chip_part = part


@pytest.mark.parametrize("mode, kind", [
    ("intel_rapl", "measured"), ("windows_emi", "measured"), ("intel_power_gadget", "measured"),
    ("cpu_load", "estimated"), ("constant", "estimated"), ("something_new", "estimated"),
])
def test_cpu_method_labels(mode, kind):
    m = cpu_method([RAM(), CPU(mode)])
    assert m.kind == kind
    if kind == "estimated":
        assert "TDP" in m.detail or "not recognised" in m.detail
    else:
        assert "codecarbon" in m.detail
    assert cpu_method([RAM()]).kind == "failed"
    assert cpu_method([CPU("cpu_load", generic=True)]).detail.count("generic TDP") == 1


def test_ram_method_is_estimate_unless_pmic():
    assert ram_method([RAM(), CPU("intel_rapl")], 10.0, 32.0).kind == "estimated"
    assert "10 W for 32 GB" in ram_method([RAM()], 10.0, 32.0).detail
    assert ram_method([Raspberry("RAM")], None, None).kind == "measured"


def test_peak_from_cumulative_samples():
    # (t s, cpu kWh, ram kWh): 3.6 kJ in 1 s = 3600 W, then 1.8 kJ in 1 s.
    samples = [(0.0, 0.0, 0.0), (1.0, 0.001, 0.0), (2.0, 0.0015, 0.0)]
    assert peak_w(samples, 1) == pytest.approx(3600.0)
    assert peak_w(samples[:1], 1) is None


def _host(cpu_kwh=0.002, ram_kwh=0.001):
    est = Method("estimated", "x")
    return HostReading(Component(cpu_kwh, 10.0, 12.0, est), Component(ram_kwh, 5.0, 5.0, est),
                       None, 0, None, "test")


def test_energy_carbon_cost_arithmetic():
    ctx = resolve_context(MeasureOptions(region="aws:us-east-1", hardware="h100-sxm"))
    assert ctx.pue == 1.15 and ctx.country_iso3 == "USA"
    gpu, count = gpu_part(_host(), GpuSide((), 0, "none visible"))
    assert (gpu.kwh, gpu.method.kind, count) == (0.0, "none", 0)
    energy = energy_report(_host(), gpu, (), ctx.pue, "test")
    assert energy.it_kwh == pytest.approx(0.003) and energy.kwh == pytest.approx(0.00345)
    carbon = carbon_report(energy, ctx, None)
    assert carbon.kg_co2e == pytest.approx(0.00345 * ctx.grid_g_co2e_per_kwh / 1000)
    cost = cost_report(MeasureOptions(devices=8), ctx, 0, 1800.0)
    assert cost.device_hours == pytest.approx(4.0)
    assert cost.total_usd == pytest.approx(4.0 * ctx.usd_per_device_hour)
    no_devices = cost_report(MeasureOptions(), ctx, 0, 1800.0)
    assert no_devices.total_usd is None and "--devices" in no_devices.note


def test_missing_component_is_not_zero():
    host = HostReading(Component(0.002, 1.0, None, Method("estimated", "x")),
                       Component(None, None, None, Method("none", "not measured")),
                       None, 0, None, "cpu-time")
    energy = energy_report(host, Component(0.0, None, None, Method("none", "no GPU")), (), 1.0,
                           "t")
    assert energy.ram_kwh is None and energy.it_kwh == pytest.approx(0.002)
    ctx = resolve_context(MeasureOptions())
    assert cost_report(MeasureOptions(), ctx, 2, 60.0).total_usd is None  # no price


def test_context_defaults_and_sources():
    fr = resolve_context(MeasureOptions(region="FR"))
    assert fr.pue == 1.0 and "no cloud provider" in fr.pue_source
    assert fr.grid_g_co2e_per_kwh == grid_factor("FR").g_co2e_per_kwh and fr.country_iso3 == "FRA"
    world = resolve_context(MeasureOptions())
    assert world.grid_g_co2e_per_kwh == 475 and "no --region" in world.grid_source
    gcp = resolve_context(MeasureOptions(region="gcp:europe-west4", pue=1.3, grid_g_co2e_per_kwh=9))
    assert (gcp.pue, gcp.grid_g_co2e_per_kwh, gcp.country_iso3) == (1.3, 9, "NLD")
    assert country_iso3(grid_factor("US-VA")) == "USA"
    assert country_iso3(grid_factor("azure:westeurope")) == "NLD"


@pytest.mark.parametrize("opts, words", [
    ({"tokens": 1e6, "steps": 10}, "not both"),
    ({"extrapolate_to": 1e9}, "needs --tokens"),
    ({"price_tier": "spot"}, "needs --hardware"),
    ({"pue": 0.5}, "--pue"),
    ({"tokens": -5}, "positive"),
    ({"hardware": "h100-sxm", "price_tier": "nope"}, "no 'nope' price"),
])
def test_bad_options(opts, words):
    with pytest.raises(SpecError, match=words):
        resolve_context(MeasureOptions(**opts))


def test_unknown_region_suggests():
    with pytest.raises(UnknownNameError, match="did you mean: FRA"):
        resolve_context(MeasureOptions(region="Frnace"))


def test_exit_codes():
    assert [exit_code_of(c) for c in (0, 3, -9, -15, -2)] == [0, 3, 137, 143, 130]


def test_signals_held_while_recording():
    import os
    import signal
    with signals_held() as held:
        os.kill(os.getpid(), signal.SIGINT)  # would raise KeyboardInterrupt outside
    assert held == [signal.SIGINT]


def test_measurement_modules_import_no_cycle():
    """No module of planner.measurement imports (at any level) one that imports it back."""
    import ast

    pkg = Path(__file__).parent.parent / "planner" / "measurement"
    graph: dict[str, set[str]] = {}
    for f in pkg.glob("*.py"):
        deps = set()
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                deps.add(node.module)
            elif isinstance(node, ast.Import):
                deps.update(a.name for a in node.names)
        graph[f"planner.measurement.{f.stem}"] = {d for d in deps
                                                  if d.startswith("planner.measurement.")}

    def reach(start: str) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            for d in graph.get(todo.pop(), ()):
                if d not in seen:
                    seen.add(d)
                    todo.append(d)
        return seen

    cycles = sorted(m for m in graph if m in reach(m))
    assert cycles == []


def test_codecarbon_stays_out_of_commands_that_do_not_meter():
    code = ("import sys, planner.cli.measure, planner.measurement.session, "
            "planner.measurement.codecarbon_meter, planner.cli.run; "
            "print('codecarbon' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"
