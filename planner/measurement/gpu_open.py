"""The GPU meter's back-end for this machine: NVML (NVIDIA), else amdsmi (AMD)."""

from __future__ import annotations

from planner.measurement.gpu import GpuBackend, NvmlBackend
from planner.measurement.gpu_amd import AmdSmiBackend


def open_backend() -> tuple[GpuBackend | None, str]:
    """NVML, else amdsmi: (backend, its label) or (None, why neither)."""
    nvml, why_nv = NvmlBackend.open()
    if nvml is not None:
        return nvml, "NVML"
    amd, why_amd = AmdSmiBackend.open()
    if amd is not None:
        return amd, "amdsmi"
    return None, f"{why_nv}; {why_amd}"
