"""AMD GPUs through ``amdsmi`` (ROCm's library, what codecarbon uses), as a ``GpuBackend``.

The same method as NVML's: the energy counter first (``amdsmi_get_energy_count``: an
accumulator of ``counter_resolution`` µJ units, key ``energy_accumulator``, ``power`` in older
ROCm), power sampling second (``amdsmi_get_power_info``: ``average_socket_power`` W, else
``current_socket_power``). Process lists from ``amdsmi_get_gpu_process_list``. Readings are
device-level. The module is passed in (``AmdSmiBackend(amdsmi)``) so tests use a fake one.
"""

from __future__ import annotations

import contextlib
from typing import Any

from planner.measurement.gpu import GpuDevice


class AmdSmiBackend:
    """``GpuBackend`` over amdsmi. ``open()`` returns (backend or None, why not)."""

    label = "amdsmi"

    def __init__(self, amdsmi: Any) -> None:
        self._smi = amdsmi
        self._handles = list(amdsmi.amdsmi_get_processor_handles())

    @classmethod
    def open(cls) -> tuple[AmdSmiBackend | None, str]:
        try:
            import amdsmi  # type: ignore[import-not-found]
        except ImportError:
            return None, "no AMD GPU library (amdsmi, from ROCm, not installed)"
        try:
            amdsmi.amdsmi_init()
            backend = cls(amdsmi)
        except Exception as e:  # noqa: BLE001 - AmdSmiLibraryException and kin
            return None, f"amdsmi unavailable: {e}"
        if not backend._handles:
            return None, "amdsmi found no AMD GPU"
        return backend, "amdsmi"

    def _call(self, fn: str, index: int) -> Any:
        try:
            return getattr(self._smi, fn)(self._handles[index])
        except Exception:  # noqa: BLE001 - unsupported on this GPU / driver
            return None

    def devices(self) -> list[GpuDevice]:
        out = []
        for i in range(len(self._handles)):
            asic = self._call("amdsmi_get_gpu_asic_info", i) or {}
            uuid = self._call("amdsmi_get_gpu_device_uuid", i) or f"amd-gpu-{i}"
            out.append(GpuDevice(i, _text(uuid), _text(asic.get("market_name") or "AMD GPU"),
                                 vendor="amd"))
        return out

    def power_w(self, index: int) -> float | None:
        info = self._call("amdsmi_get_power_info", index) or {}
        for key in ("average_socket_power", "current_socket_power"):
            value = _number(info.get(key))
            if value:  # 0 or "N/A": not reported by this GPU
                return value
        return None

    def energy_j(self, index: int) -> float | None:
        count = self._call("amdsmi_get_energy_count", index) or {}
        value = _number(count.get("energy_accumulator", count.get("power")))
        resolution_uj = _number(count.get("counter_resolution"))
        if not value or not resolution_uj:
            return None
        return value * resolution_uj / 1e6

    def process_ids(self, index: int) -> set[int] | None:
        procs = self._call("amdsmi_get_gpu_process_list", index)
        if procs is None:
            return None
        return {int(p["pid"]) for p in procs if isinstance(p, dict) and "pid" in p}

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._smi.amdsmi_shut_down()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
