"""The GPU meter's back-end for this machine: NVML (NVIDIA), else amdsmi (AMD)."""

from __future__ import annotations

import glob
import os
import sys

from planner.measurement.gpu import GpuBackend, NvmlBackend
from planner.measurement.gpu_amd import AmdSmiBackend


def no_gpu_device_files() -> bool:
    """True on Linux when no GPU driver device exists (/dev/nvidia*, /dev/kfd, /dev/dxg):
    then loading pynvml and amdsmi (~50 ms) can only fail."""
    if not sys.platform.startswith("linux") or not os.path.isdir("/dev"):
        return False
    return not (glob.glob("/dev/nvidia*") or os.path.exists("/dev/kfd")
                or os.path.exists("/dev/dxg"))


def open_backend() -> tuple[GpuBackend | None, str]:
    """NVML, else amdsmi: (backend, its label) or (None, why neither)."""
    if no_gpu_device_files():
        return None, "no GPU driver device: no /dev/nvidia*, /dev/kfd or /dev/dxg"
    nvml, why_nv = NvmlBackend.open()
    if nvml is not None:
        return nvml, "NVML"
    amd, why_amd = AmdSmiBackend.open()
    if amd is not None:
        return amd, "amdsmi"
    return None, f"{why_nv}; {why_amd}"
