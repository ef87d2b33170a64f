"""The default host meter: codecarbon's methods on planner's own counters, with the hardware
detection cached per machine (hostfacts.py, hostmeter.py), and NVML started beside the command.

Expected values are derived by hand from codecarbon 3.3.2's formulas: machine-mode CPU-load
model power = TDP x (0.1 + 0.9 x load^3) (codecarbon/external/hardware.py,
CPU._get_power_from_cpu_load), RAM power constant for a memory size (external/ram.py).
"""

from __future__ import annotations

import json

import pytest

from planner.measurement import hostfacts
from planner.measurement.gpu import GpuSampler
from planner.measurement.hostfacts import FactsLoader, HostFacts
from planner.measurement.hostmeter import CounterMeter, RaplCounters, cpu_times, load_factor
from tests.measure_support import FakeGpuBackend

FACTS = HostFacts(cpu_mode="cpu_load", cpu_model="Test CPU", tdp_w=100.0,
                  cpu_detail="codecarbon CPU-load model, machine-wide load from psutil",
                  rapl_dir=None, ram_w=20.0, ram_gb=24.0, ram_detail="codecarbon RAM model",
                  detected_by="codecarbon 9.9", detected_at="2026-12-01T00:00:00+00:00")


class Given(FactsLoader):
    """A loader that has the facts already (no cache, no detection)."""

    def __init__(self, facts: HostFacts | None, rapl_dir: str = "/nonexistent") -> None:
        super().__init__(rapl_dir=rapl_dir)
        self.given = facts

    def start(self) -> None:
        self.facts, self.source = self.given, "test"
        self.error = None if self.given else "no facts in this test"


class Script:
    """Fake clock and CPU counters: each call returns the next scripted value."""

    def __init__(self, values):
        self.values = list(values)

    def __call__(self):
        return self.values.pop(0)


def test_load_factor_is_codecarbons_cubic_model():
    assert load_factor(0.0) == pytest.approx(0.1)
    assert load_factor(0.5) == pytest.approx(0.1 + 0.9 * 0.125)  # 0.2125
    assert load_factor(1.0) == pytest.approx(1.0)
    assert load_factor(1.7) == pytest.approx(1.0)  # clamped, as codecarbon's percent()


def test_cpu_load_energy_per_interval_by_hand():
    # Samples at t = 0 (start), 10 (thread), 30 (stop): loads 0.5 then 1.0.
    clock = Script([0.0, 10.0, 30.0])
    cpu = Script([(0.0, 0.0), (10.0, 20.0), (50.0, 60.0)])
    meter = CounterMeter(interval_s=1e6, loader=Given(FACTS), read_cpu=cpu, clock=clock)
    meter.start()
    meter._sample()  # what the thread does after one interval
    r = meter.stop(30.0)
    # 10 s x 100 W x 0.2125 + 20 s x 100 W x 1.0 = 212.5 + 2000 = 2212.5 J
    assert r.cpu.kwh == pytest.approx(2212.5 / 3.6e6)
    assert r.cpu.peak_power_w == pytest.approx(100.0)
    assert r.cpu.avg_power_w == pytest.approx(2212.5 / 30)
    assert r.cpu.method.kind == "estimated"
    assert "load from the kernel's CPU times" in r.cpu.method.detail
    assert "codecarbon 9.9" in r.cpu.method.detail
    # RAM: 20 W x 30 s (the duration given) = 600 J
    assert r.ram.kwh == pytest.approx(600 / 3.6e6)
    assert r.ram.method.kind == "estimated"


def test_process_share_of_the_machine_wide_cpu_energy():
    # The machine was busy 10 CPU-seconds over the run; the command used 4 of them.
    meter = CounterMeter(1e6, Given(FACTS), read_cpu=Script([(0.0, 0.0), (10.0, 20.0)]),
                         clock=Script([0.0, 10.0]), read_own=Script([100.0, 104.0]))
    meter.start()
    r = meter.stop(10.0)
    assert r.cpu_share == pytest.approx(0.4)
    assert "the command's processes used 40% of the machine's busy CPU time" in \
        r.cpu.method.detail
    # machine-wide: 10 s x 100 W x (0.1 + 0.9 x 0.5^3) = 212.5 J; its share 85 J
    assert r.cpu.kwh == pytest.approx(212.5 / 3.6e6)
    assert "process-share estimate 85 J" in r.cpu.method.detail


def test_constant_mode_is_half_tdp():
    facts = HostFacts(**{**FACTS.__dict__, "cpu_mode": "constant"})
    meter = CounterMeter(1e6, Given(facts), read_cpu=Script([(0, 0), (5, 5)]),
                         clock=Script([0.0, 4.0]))
    meter.start()
    r = meter.stop(4.0)
    assert r.cpu.kwh == pytest.approx(4.0 * 50.0 / 3.6e6)


def test_rapl_counters_with_wraparound(tmp_path):
    pkg = tmp_path / "intel-rapl:0"
    pkg.mkdir()
    (pkg / "name").write_text("package-0\n")
    (pkg / "max_energy_range_uj").write_text("1000000\n")  # wraps at 1 J
    energy = pkg / "energy_uj"
    energy.write_text("900000\n")
    dram = tmp_path / "intel-rapl:0:0"
    dram.mkdir()
    (dram / "name").write_text("dram\n")
    (dram / "energy_uj").write_text("5\n")
    rapl = RaplCounters(str(tmp_path))
    assert [p for p, _ in rapl.files] == [str(energy)]  # packages only, as codecarbon
    rapl.start()
    energy.write_text("100000\n")  # wrapped: 0.1 J to the top + 0.1 J after
    assert rapl.read() == pytest.approx(0.2)
    energy.write_text("600000\n")
    assert rapl.read() == pytest.approx(0.7)


def test_rapl_mode_reads_counters(tmp_path):
    pkg = tmp_path / "intel-rapl:0"
    pkg.mkdir()
    (pkg / "name").write_text("package-0")
    (pkg / "max_energy_range_uj").write_text("262143328850")
    (pkg / "energy_uj").write_text("1000000")
    facts = HostFacts(**{**FACTS.__dict__, "cpu_mode": "intel_rapl", "rapl_dir": str(tmp_path)})
    meter = CounterMeter(1e6, Given(facts, str(tmp_path)), read_cpu=Script([(0, 0)] * 2),
                         clock=Script([0.0, 2.0]))
    meter.start()
    (pkg / "energy_uj").write_text("51000000")  # +50 J
    r = meter.stop(2.0)
    assert r.cpu.kwh == pytest.approx(50 / 3.6e6)
    assert r.cpu.method.kind == "measured"
    assert r.cpu.peak_power_w == pytest.approx(25.0)


def test_no_facts_is_failed_not_zero():
    meter = CounterMeter(1e6, Given(None), read_cpu=Script([(0, 0)] * 2),
                         clock=Script([0.0, 1.0]))
    meter.start()
    r = meter.stop(1.0)
    assert r.cpu.kwh is None and r.cpu.method.kind == "failed"


def test_cpu_times_reads_proc_stat():
    busy, total = cpu_times()
    assert 0 <= busy <= total


def test_cache_round_trip_and_key(tmp_path, monkeypatch):
    monkeypatch.setenv("PLANNER_CACHE_DIR", str(tmp_path))
    key, inputs = hostfacts.machine_key()
    assert hostfacts.machine_key()[0] == key  # stable
    path = hostfacts.save(key, inputs, FACTS)
    assert path == tmp_path / "hardware" / f"host-{key}.json"
    assert json.loads(path.read_text())["key_inputs"]["host"] == inputs["host"]
    assert hostfacts.load_cached(key) == FACTS
    assert not list(path.parent.glob(".*.tmp"))  # written through a temporary file


def test_cached_facts_skip_detection(tmp_path, monkeypatch):
    monkeypatch.setenv("PLANNER_CACHE_DIR", str(tmp_path))
    key, inputs = hostfacts.machine_key()
    hostfacts.save(key, inputs, FACTS)

    def boom(_version):
        raise AssertionError("detection ran although the facts were cached")

    monkeypatch.setattr(hostfacts, "detect_with_codecarbon", boom)
    loader = FactsLoader()
    loader.start()
    assert loader.result() == FACTS and loader.source.startswith("cache ")


def test_hardware_change_invalidates_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PLANNER_CACHE_DIR", str(tmp_path))
    key, inputs = hostfacts.machine_key()
    hostfacts.save(key, inputs, FACTS)
    monkeypatch.setattr(hostfacts.os, "cpu_count", lambda: 4096)  # "new hardware"
    calls = []

    def detect(version):
        calls.append(version)
        return HostFacts(**{**FACTS.__dict__, "tdp_w": 7.0})

    monkeypatch.setattr(hostfacts, "detect_with_codecarbon", detect)
    loader = FactsLoader()
    loader.start()
    assert loader.result().tdp_w == 7.0 and calls
    assert loader.source.startswith("detected now, cached in ")
    assert len(list((tmp_path / "hardware").glob("host-*.json"))) == 2


def test_refresh_and_no_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PLANNER_CACHE_DIR", "")
    monkeypatch.setattr(hostfacts, "detect_with_codecarbon", lambda v: FACTS)
    loader = FactsLoader()
    loader.start()
    assert loader.result() == FACTS and loader.source == "detected now, not cached"


def test_detection_failure_is_reported(monkeypatch):
    def fail(_version):
        raise RuntimeError("lscpu missing")

    monkeypatch.setattr(hostfacts, "detect_with_codecarbon", fail)
    meter = CounterMeter(1e6, FactsLoader(refresh=True), read_cpu=Script([(0, 0)] * 2),
                         clock=Script([0.0, 1.0]))
    meter.start()
    r = meter.stop(1.0)
    assert r.cpu.method.kind == "failed" and "lscpu missing" in r.cpu.method.detail


def test_gpu_started_late_fills_the_gap():
    # NVML ready 2 s after the command started; the counter then reads 300 W x 10 s.
    t = {"now": 102.0}
    backend = FakeGpuBackend([300.0], [True], clock=lambda: t["now"])
    sampler = GpuSampler(backend, backend.devices(), 1e6, clock=lambda: t["now"], since=100.0)
    sampler.start()
    t["now"] = 112.0
    (g,) = sampler.stop()
    # counter 3000 J + the 2 s gap at the first reading, 300 W: 600 J
    assert g.kwh == pytest.approx(3600 / 3.6e6)
    assert g.avg_power_w == pytest.approx(300.0)
    assert "the 2 s between the command's start and NVML's first reading" in g.method.detail


def test_measure_cli_uses_the_cached_host_meter(tmp_path, monkeypatch, runner):
    from planner.cli import cli

    monkeypatch.setenv("PLANNER_CACHE_DIR", str(tmp_path))
    key, inputs = hostfacts.machine_key()
    hostfacts.save(key, inputs, FACTS)
    out = tmp_path / "run.json"
    r = runner.invoke(cli, ["measure", "--no-ledger", "--format", "json", "--output",
                            str(out), "--", "true"])
    assert r.exit_code == 0, r.output
    rec = json.loads(out.read_text())
    assert rec["energy"]["meter"].startswith("planner host meter (codecarbon 9.9's methods; cache")
    assert rec["energy"]["methods"]["cpu"]["kind"] == "estimated"
    assert rec["energy"]["ram_kwh"] == pytest.approx(20.0 * rec["duration_s"] / 3.6e6)


def test_auto_is_the_host_meter_on_linux_and_codecarbon_elsewhere(monkeypatch):
    pytest.importorskip("codecarbon")
    from planner.measurement import energy

    monkeypatch.setattr(energy.sys, "platform", "linux")
    assert energy.host_meter("auto", None, 1.0, None).name == "host"
    monkeypatch.setattr(energy.sys, "platform", "darwin")
    assert energy.host_meter("auto", None, 1.0, None).name == "codecarbon"
    assert energy.host_meter("host", None, 1.0, None).name == "host"  # asked for: given
