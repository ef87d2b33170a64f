"""`planner.measure(...)` from Python, the NVML path with a fake GPU, and import cost."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
from measure_support import FakeGpuBackend

import planner
from planner.catalog.catalog import load_hardware
from planner.measurement.ledger import Ledger
from planner.measurement.results import RunRecord


def test_import_planner_stays_light():
    code = ("import sys, planner; import planner.cli; "
            "print(sorted({m.split('.')[0] if not m.startswith('planner.') else m "
            "for m in sys.modules if m.startswith(('codecarbon', 'pynvml', 'sqlite3', "
            "'planner.measurement', 'psutil'))}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_measure_is_callable_after_the_cli_is_imported():
    import planner.cli
    import planner.measurement.api
    assert callable(planner.measure) and planner.measure.__module__ == "planner"


def test_result_is_typed_and_recorded(tmp_path):
    ledger = tmp_path / "runs.sqlite"
    with planner.measure(label="api", region="SE", ledger=ledger, meter="cpu-time",
                         price_per_hour=3.0, devices=2) as m:
        sum(i * i for i in range(300_000))
    r = m.result
    assert isinstance(r, RunRecord) and r.complete and r.label == "api"
    assert r.energy.cpu_kwh > 0 and r.energy.methods["cpu"].kind == "estimated"
    assert r.cost.total_usd == pytest.approx(2 * r.duration_s / 3600 * 3.0)
    assert json.loads(json.dumps(r.to_dict()))["carbon"]["region"] == "SWE"
    assert Ledger(ledger).get(r.id)["label"] == "api"


def test_extrapolation_from_python_takes_counts_as_text():
    with planner.measure(ledger=False, meter="cpu-time", tokens="5M", extrapolate_to="1B") as m:
        time.sleep(0.05)
    x = m.result.extrapolation
    assert (x.measured, x.target, x.scale) == (5e6, 1e9, pytest.approx(200))
    assert x.projected.duration_s == pytest.approx(200 * m.result.duration_s)
    assert x.planner_estimate is None  # no --model/--hardware: nothing to compare with
    with pytest.raises(planner.errors.SpecError, match="tokens"):
        planner.measure(ledger=False, tokens="lots").__enter__()


def test_exception_in_block_is_recorded_then_raised(tmp_path):
    ledger = tmp_path / "runs.sqlite"
    with pytest.raises(ZeroDivisionError), planner.measure(ledger=ledger, meter="cpu-time") as m:
        _ = 1 / 0
    assert m.result.complete is False and "ZeroDivisionError" in m.result.error
    assert Ledger(ledger).runs()[0]["complete"] is False


def test_bad_options_fail_before_the_block(tmp_path):
    ran = []
    with pytest.raises(planner.errors.UnknownNameError), planner.measure(
            region="Atlantis", ledger=tmp_path / "l.sqlite"):
        ran.append(1)
    with pytest.raises(TypeError), planner.measure(ledger=False, not_an_option=1):
        ran.append(1)
    assert ran == [] and not (tmp_path / "l.sqlite").exists()


def test_nvml_path_with_a_fake_gpu(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    fake = FakeGpuBackend([300.0, 400.0], [True, False])
    with planner.measure(ledger=False, meter="cpu-time", gpu_backend=fake, interval_s=0.02,
                         hardware="h100-sxm") as m:
        time.sleep(0.3)
    r = m.result
    (gpu,) = r.energy.gpus  # only the visible one
    assert gpu.index == 1 and gpu.uuid.startswith("GPU-0001")
    assert gpu.avg_power_w == pytest.approx(400.0, rel=0.05)
    assert "power readings" in gpu.method.detail  # GPU 1 has no energy counter
    # The sampler's window brackets the timed run: at least 400 W x duration, a little more.
    assert 400.0 * r.duration_s / 3.6e6 <= r.energy.gpu_kwh < 400.0 * (r.duration_s + 1) / 3.6e6
    assert r.energy.methods["gpu"].kind == "measured" and "NVML" in r.energy.methods["gpu"].detail
    assert r.energy.meter == "cpu-time + NVML" and fake.closed
    price = load_hardware("h100-sxm").price("on_demand").usd_per_device_hour
    assert r.cost.devices == 1
    assert r.cost.total_usd == pytest.approx(r.duration_s / 3600 * price)


def test_nvml_counter_and_hidden_gpus(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    fake = FakeGpuBackend([250.0, 400.0], [True, True])
    with planner.measure(ledger=False, meter="cpu-time", gpu_backend=fake) as m:
        time.sleep(0.2)
    (gpu,) = m.result.energy.gpus
    assert "energy counter" in gpu.method.detail
    assert gpu.avg_power_w == pytest.approx(250.0, rel=0.05)  # counter delta / its window
    assert gpu.kwh >= 250.0 * m.result.duration_s / 3.6e6
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    with planner.measure(ledger=False, meter="cpu-time", gpu_backend=FakeGpuBackend(
            [250.0], [True])) as m:
        pass
    assert m.result.energy.gpu_kwh == 0.0 and m.result.energy.gpus == ()
    assert "hides all 1" in m.result.energy.methods["gpu"].detail
    assert m.result.cost.total_usd is None
