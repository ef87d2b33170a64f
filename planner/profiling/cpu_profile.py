"""A hardware profile for this CPU, from measurements, so the step-time model can run on it."""

from __future__ import annotations

import os
import platform

from planner.estimators.step_time import PerfParams
from planner.specs.hardware import HardwareProfile

CPU_GEMM_FRACTION = 0.9  # CPU GEMMs of training shapes reach ~90% of the measured peak


def cpu_profile(peak_flops_per_s: float, bandwidth_bytes_per_s: float,
                perf: PerfParams = PerfParams()) -> HardwareProfile:
    """A single-device 'cpu' profile whose peak and HBM bandwidth are measured values.

    Its expected efficiency is chosen so that the step-time model's large-GEMM efficiency
    (perf.gemm_efficiency_max x expected / reference) is CPU_GEMM_FRACTION of the peak.
    """
    src = "measured on this machine by planner validate"
    fig = lambda v, s=src: {"value": v, "source": s, "confidence": "derived"}  # noqa: E731
    expected = CPU_GEMM_FRACTION * perf.reference_efficiency / perf.gemm_efficiency_max
    tflops = peak_flops_per_s / 1e12
    return HardwareProfile.model_validate({
        "name": "cpu", "display_name": f"{platform.processor() or platform.machine()} CPU "
        f"({os.cpu_count()} threads)", "vendor": "cpu", "device_type": "accelerator",
        "release_year": 2020,
        "peak_dense_fp32_tflops": fig(tflops), "peak_dense_bf16_tflops": fig(tflops),
        "peak_dense_fp16_tflops": fig(tflops),
        "memory_gib": fig(float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
                                / 2**30), "os.sysconf"),
        "hbm_bandwidth_tb_per_s": fig(bandwidth_bytes_per_s / 1e12),
        "scale_up_bandwidth_gb_per_s_one_way": fig(1.0, "not used (one device)"),
        "scale_up_domain_devices": fig(1, "one device"),
        "scale_out_bandwidth_gb_per_s": fig(1.0, "not used (one device)"),
        "devices_per_node": fig(1, "one device"),
        "tdp_w": fig(0, "unknown"), "host_power_w_per_device": fig(0, "unknown"),
        "prices": [{"tier": "assumption", "usd_per_device_hour": 0.01, "provider": "none",
                    "date": "2026-01", "source": "not priced", "confidence": "uncertain"}],
        "efficiency": {"low": expected * 0.7, "expected": expected,
                       "high": min(1.0, expected * 1.1),
                       "source": f"CPU GEMMs assumed at {CPU_GEMM_FRACTION:.0%} of the "
                                 "measured matmul peak"},
    })
