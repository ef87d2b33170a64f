"""GPUs on shared nodes and AMD GPUs: which devices count as the command's (visibility
variables, driver process lists), and amdsmi behind the same interface as NVML, with a fake
amdsmi module as the device reader."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

import planner
from planner.measurement.gpu import GpuDevice, GpuSampler, attribute, process_tree, visibility
from planner.measurement.gpu_amd import AmdSmiBackend
from planner.measurement.results import GpuEnergy, Method
from tests.measure_support import FakeGpuBackend


class FakeAmdSmi:
    """The few amdsmi calls planner makes. Energy accumulates 500 W x elapsed time in units of
    ``resolution_uj`` µJ (an MI300X reports 15.3 µJ); GPU 1 has no counter and 'N/A' average
    power (its current power is read instead)."""

    def __init__(self, clock, resolution_uj=15.3):
        self.clock, self.res, self.t0 = clock, resolution_uj, clock()
        self.processes = {"h0": [{"pid": 4242, "mem": 1}], "h1": []}
        self.shut = False

    def amdsmi_get_processor_handles(self):
        return ["h0", "h1"]

    def amdsmi_get_gpu_asic_info(self, h):
        return {"market_name": "AMD Instinct MI300X"}

    def amdsmi_get_gpu_device_uuid(self, h):
        return {"h0": "GPU-aa00", "h1": "GPU-bb11"}[h]

    def amdsmi_get_power_info(self, h):
        if h == "h0":
            return {"average_socket_power": 500, "current_socket_power": 510}
        return {"average_socket_power": "N/A", "current_socket_power": 300}

    def amdsmi_get_energy_count(self, h):
        if h == "h1":
            return {"energy_accumulator": 0, "counter_resolution": self.res}
        joules = 1e4 + 500 * (self.clock() - self.t0)
        return {"energy_accumulator": joules * 1e6 / self.res, "counter_resolution": self.res,
                "timestamp": 0}

    def amdsmi_get_gpu_process_list(self, h):
        return self.processes[h]

    def amdsmi_shut_down(self):
        self.shut = True


def test_amdsmi_backend_reads_like_nvml():
    t = {"now": 0.0}
    smi = FakeAmdSmi(lambda: t["now"])
    b = AmdSmiBackend(smi)
    devs = b.devices()
    assert [(d.index, d.uuid, d.name, d.vendor) for d in devs] == [
        (0, "GPU-aa00", "AMD Instinct MI300X", "amd"), (1, "GPU-bb11", "AMD Instinct MI300X",
                                                       "amd")]
    assert b.energy_j(0) == pytest.approx(1e4)  # counter x resolution (µJ) / 1e6
    assert b.energy_j(1) is None  # a counter that reads 0 is no counter
    assert b.power_w(0) == 500 and b.power_w(1) == 300
    assert b.process_ids(0) == {4242} and b.process_ids(1) == set()
    b.close()
    assert smi.shut


def test_amd_sampler_counter_first_power_second():
    t = {"now": 0.0}
    smi = FakeAmdSmi(lambda: t["now"])
    b = AmdSmiBackend(smi)
    s = GpuSampler(b, b.devices(), 1e6, clock=lambda: t["now"])
    s.start()
    t["now"] = 10.0
    g0, g1 = s.stop()
    assert g0.kwh == pytest.approx(5000 / 3.6e6)  # 500 W x 10 s from the counter
    assert g0.method.detail == "amdsmi energy counter"
    assert g1.kwh == pytest.approx(3000 / 3.6e6)  # 300 W at both readings, integrated
    assert g1.method.detail.startswith("amdsmi power readings every")


def _devs(n, vendor="nvidia"):
    return [GpuDevice(i, f"GPU-{i}", "X", vendor) for i in range(n)]


def test_visibility_variables():
    assert visibility(_devs(4), {}) == (_devs(4), None)
    chosen, how = visibility(_devs(4), {"CUDA_VISIBLE_DEVICES": "2,0"})
    assert [d.index for d in chosen] == [2, 0] and how == "CUDA_VISIBLE_DEVICES='2,0'"
    # ROCR picks 1 and 3 (re-numbered 0 and 1), then HIP's 1 is physical GPU 3.
    chosen, how = visibility(_devs(4, "amd"), {"ROCR_VISIBLE_DEVICES": "1,3",
                                               "HIP_VISIBLE_DEVICES": "1",
                                               "CUDA_VISIBLE_DEVICES": "0"})
    assert [d.index for d in chosen] == [3]
    assert how == "ROCR_VISIBLE_DEVICES='1,3', HIP_VISIBLE_DEVICES='1'"
    chosen, _ = visibility(_devs(4, "amd"), {"CUDA_VISIBLE_DEVICES": "1"})  # HIP reads it too
    assert [d.index for d in chosen] == [1]
    assert visibility(_devs(2, "amd"), {"ROCR_VISIBLE_DEVICES": ""})[0] == []


def _energy(i):
    return GpuEnergy(i, f"GPU-{i}", "X", 0.1, 100.0, 100.0, Method("measured", "test"))


def test_attribution_methods():
    gpus = [_energy(0), _energy(1)]
    kept, how = attribute(gpus, "CUDA_VISIBLE_DEVICES='0,1'", {}, 8)
    assert kept == tuple(gpus) and how.startswith("the 2 of 8 GPU(s) visible to it")
    kept, how = attribute(gpus, None, {0: False, 1: True}, 2)
    assert kept == (gpus[1],) and "the driver listed its processes on" in how
    kept, how = attribute(gpus, None, {0: False, 1: False}, 2)
    assert kept == tuple(gpus) and "listed none of its processes" in how
    kept, how = attribute(gpus, None, {0: None, 1: None}, 2)
    assert kept == tuple(gpus) and "no process list" in how and "CUDA_VISIBLE_DEVICES" in how


class ListingBackend(FakeGpuBackend):
    """A fake NVML whose process list shows this process on GPU 1 only."""

    def process_ids(self, index):
        return {os.getpid()} if index == 1 else {1}


def test_shared_node_counts_only_the_gpus_the_block_ran_on(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    fake = ListingBackend([100.0, 200.0, 300.0], [True, True, True])
    with planner.measure(ledger=False, meter="cpu-time", gpu_backend=fake, interval_s=0.02) as m:
        time.sleep(0.1)
    r = m.result
    assert [g.index for g in r.energy.gpus] == [1]
    assert r.energy.gpu_kwh == pytest.approx(r.energy.gpus[0].kwh)
    assert "counted: the 1 of 3 GPU(s) the driver listed its processes on" in \
        r.energy.methods["gpu"].detail


def test_process_tree_finds_descendants():
    if not os.path.isdir("/proc"):
        pytest.skip("no /proc")
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(5)"])
    try:
        assert {os.getpid(), child.pid} <= process_tree(os.getpid())
        assert os.getppid() not in process_tree(os.getpid())
    finally:
        child.kill()
        child.wait()
