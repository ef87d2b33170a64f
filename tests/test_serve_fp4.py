"""fp4 serving: the B200 / GB200 dense FP4 peaks (NVIDIA's sparse 18 / 20 PFLOPS per GPU halved:
hardware_facts.md §1a), NVFP4 weight bytes, and one line naming the hardware that has it."""

from __future__ import annotations

import pytest

from planner.catalog.catalog import load_hardware, load_model
from planner.cli import cli
from planner.estimators.params import count_params
from planner.estimators.serving import (
    Layout, ServeConfig, StepLoad, forward_flops, iteration_time, peak_for,
    weight_bytes_per_param,
)


@pytest.mark.parametrize("name,tflops", [("b200", 9000), ("gb200", 10000)])
def test_fp4_peaks(name, tflops):
    hw = load_hardware(name)
    assert peak_for(hw, "fp4") == tflops * 1e12
    assert peak_for(hw, "fp4") == 2 * peak_for(hw, "fp8")  # Blackwell: FP4 = 2 x FP8


def test_nvfp4_bytes_and_compute():
    # NVFP4: 4-bit values with one 8-bit scale per 16: 0.5 + 1/16 bytes per weight
    assert weight_bytes_per_param("fp4") == 0.5625
    m, hw = load_model("llama3-70b"), load_hardware("b200")
    it = iteration_time(m, hw, ServeConfig("fp4", "fp8", Layout(1, 1)), StepLoad(64, 1000))
    flops = forward_flops(m, count_params(m), 64, 1000)
    assert it.decode_compute_s == pytest.approx(flops / (9000e12 * 0.55))


def test_fp4_where_there_is_none_names_where_there_is(runner):
    res = runner.invoke(cli, ["serve", "--model", "llama3-8b", "--hardware", "h100-sxm",
                              "--precision", "fp4"])
    assert res.exit_code != 0
    line = res.stderr.strip()
    assert len(line.splitlines()) == 1
    assert "--precision fp4: h100-sxm has no fp4 compute path" in line
    assert "fp4 runs on b200, gb200" in line


def test_fp4_serves_on_b200(runner):
    res = runner.invoke(cli, ["serve", "--model", "llama3-8b", "--hardware", "b200",
                              "--precision", "fp4"])
    assert res.exit_code == 0, res.stderr
    assert "fp4 weights" in res.stdout
