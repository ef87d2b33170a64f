"""CPU, RAM (and GPU) energy from codecarbon's ``OfflineEmissionsTracker``, with honest labels.

Only the offline tracker is used (the online one calls the network and, without it, silently
uses another country's grid). Nothing is written to disk or sent anywhere: no output methods,
no Electricity Maps token. codecarbon is imported only here, when a measurement starts.

How each component was obtained is read from the hardware objects the tracker set up
(``tracker._hardware``; codecarbon 3.x's own hardware cache classifies them the same way):
a ``CPU`` object's ``_mode`` is ``intel_rapl`` / ``windows_emi`` / ``intel_power_gadget`` when
a hardware energy counter is read, and ``cpu_load`` / ``constant`` when power is modelled from
a TDP. RAM is always modelled (about 5 W per DIMM) unless a Raspberry Pi PMIC reads it.
Anything not recognised is labelled an estimate, never a measurement.
"""

from __future__ import annotations

import logging
import sys
from functools import lru_cache
from itertools import pairwise
from typing import Any

from planner.measurement.readings import HostReading, power_w
from planner.measurement.results import Component, Method

MEASURED_CPU_MODES = {
    "intel_rapl": "RAPL package energy counters (/sys/class/powercap), machine-wide",
    "windows_emi": "Windows Energy Meter Interface (RAPL), machine-wide",
    "intel_power_gadget": "Intel Power Gadget, machine-wide",
}


@lru_cache(maxsize=1)
def _tracker_class():
    """OfflineEmissionsTracker that also keeps cumulative energy after every reading."""
    from codecarbon import OfflineEmissionsTracker

    class Tracker(OfflineEmissionsTracker):
        def _measure_power_and_energy(self) -> None:
            super()._measure_power_and_energy()
            import time
            samples = self.__dict__.setdefault("planner_samples", [])
            samples.append((time.perf_counter(), self._total_cpu_energy.kWh,
                            self._total_ram_energy.kWh))

    return Tracker


def peak_w(samples: list[tuple[float, float, float]], column: int) -> float | None:
    """Highest average power in W between consecutive (time s, cpu kWh, ram kWh) samples."""
    rates = [(b[column] - a[column]) * 3.6e6 / (b[0] - a[0])
             for a, b in pairwise(samples) if b[0] - a[0] > 1e-3]
    return max(rates) if rates else None


def _tdp_note(cpu: Any) -> str:
    """Where the TDP behind a modelled CPU power came from."""
    tdp = getattr(cpu, "_tdp", None)
    model = getattr(cpu, "_model", None) or "unknown CPU"
    if getattr(cpu, "_is_generic_tdp", False):
        return f"generic TDP {tdp} W (CPU '{model}' not identified)"
    try:
        from codecarbon.core import cpu as cc_cpu
        from codecarbon.core.hardware_cache import get_cached_tdp
        matched = get_cached_tdp(cc_cpu)._get_cpu_power_from_registry(model)
    except Exception:  # noqa: BLE001 - a private codecarbon helper; the label still holds
        return f"TDP {tdp} W for '{model}'"
    if matched:
        return f"TDP {tdp} W for '{model}' from codecarbon's CPU table"
    return (f"TDP {tdp} W = 4 W per thread, because '{model}' is not in codecarbon's CPU "
            "table")


def cpu_method(hardware: list[Any]) -> Method:
    """How codecarbon got CPU energy, from the hardware objects it set up."""
    for hw in hardware:
        kind = type(hw).__name__
        if kind == "CPU":
            mode = getattr(hw, "_mode", None)
            if mode in MEASURED_CPU_MODES:
                return Method("measured", f"codecarbon: {MEASURED_CPU_MODES[mode]}")
            if mode == "cpu_load":
                return Method("estimated", "codecarbon CPU-load model, not a measurement: "
                              "power = TDP x (0.1 + 0.9 x load^3), machine-wide load from "
                              f"psutil; {_tdp_note(hw)}; no CPU energy counter was readable")
            if mode == "constant":
                return Method("estimated", "codecarbon constant: 50% of TDP, not a "
                              f"measurement; {_tdp_note(hw)}")
            return Method("estimated", f"codecarbon CPU mode '{mode}', not recognised by "
                          "planner, so treated as an estimate")
        if kind in ("AppleSiliconChip", "Raspberry") and getattr(hw, "chip_part", "") == "CPU":
            return Method("measured", f"codecarbon: {kind} power interface")
    return Method("failed", "codecarbon set up no CPU meter")


def ram_method(hardware: list[Any], ram_w: float | None, ram_gb: float | None) -> Method:
    """How codecarbon got RAM energy (a model unless a PMIC reads the DRAM rails)."""
    for hw in hardware:
        if type(hw).__name__ == "Raspberry" and getattr(hw, "chip_part", "") == "RAM":
            return Method("measured", "codecarbon: Raspberry Pi PMIC DRAM rails")
    size = f" for {ram_gb:.0f} GB" if ram_gb else ""
    watts = f"{ram_w:.3g} W" if ram_w is not None else "a constant power"
    return Method("estimated", f"codecarbon RAM model, not a measurement: {watts}{size} "
                  "(about 5 W per DIMM, DIMM count from the RAM size), machine-wide")


def tracker_kwargs(country_iso3: str | None, interval_s: float,
                   gpu_ids: list[int] | None) -> dict[str, Any]:
    """The offline tracker's arguments: machine mode, no output, no network, no token."""
    kwargs: dict[str, Any] = {
        "measure_power_secs": interval_s, "log_level": "error", "output_methods": [],
        "emissions_endpoint": None, "electricitymaps_api_token": None,
        "allow_multiple_runs": True, "tracking_mode": "machine",
        "project_name": "planner-measure"}
    if country_iso3:
        kwargs["country_iso_code"] = country_iso3
    if gpu_ids:
        kwargs["gpu_ids"] = gpu_ids
    return kwargs


def quiet_codecarbon() -> None:
    """Only codecarbon's errors, on the current stderr (its import sets INFO on the stderr of
    that moment, which may be a stream that is closed by now)."""
    log = logging.getLogger("codecarbon")
    log.setLevel(logging.ERROR)
    for h in log.handlers:
        if type(h) is logging.StreamHandler:
            h.setStream(sys.stderr)


class CodecarbonMeter:
    """Host meter over codecarbon's offline tracker in machine mode (whole-machine figures)."""

    name = "codecarbon"

    def __init__(self, country_iso3: str | None, interval_s: float,
                 gpu_ids: list[int] | None) -> None:
        self.country_iso3, self.interval_s, self.gpu_ids = country_iso3, interval_s, gpu_ids
        self._tracker: Any = None
        self._error: str | None = None
        self.version: str | None = None

    def start(self) -> None:
        import codecarbon

        self.version = codecarbon.__version__
        quiet_codecarbon()
        kwargs = tracker_kwargs(self.country_iso3, self.interval_s, self.gpu_ids)
        try:
            self._tracker = _tracker_class()(**kwargs)
            # A token from a codecarbon config file would make the tracker call the network.
            self._tracker._electricitymaps_api_token = None
            self._tracker.start()  # codecarbon swallows its own exceptions here
        except Exception as e:  # noqa: BLE001 - a meter failure must not lose the run
            self._error = f"{type(e).__name__}: {e}"

    def stop(self, duration_s: float) -> HostReading:
        data = None
        if self._tracker is not None and self._error is None:
            try:
                self._tracker.stop()
            except Exception as e:  # noqa: BLE001 - as in start()
                self._error = f"{type(e).__name__}: {e}"
            data = getattr(self._tracker, "final_emissions_data", None)
        meter = f"codecarbon {self.version} (machine-wide, offline)"
        if data is None:
            why = self._error or "the tracker returned no data"
            failed = Component(None, None, None, Method("failed", f"codecarbon: {why}"))
            return HostReading(failed, failed, None, 0, None, meter)
        return self._reading(data, duration_s, meter)

    def _reading(self, data: Any, duration_s: float, meter: str) -> HostReading:
        """Per-component kWh and W; averages over codecarbon's own window when it has one."""
        duration_s = data.duration if data.duration and data.duration > 0 else duration_s
        hardware = list(getattr(self._tracker, "_hardware", []))
        samples = getattr(self._tracker, "planner_samples", [])
        cpu = Component(data.cpu_energy, power_w(data.cpu_energy, duration_s),
                        peak_w(samples, 1), cpu_method(hardware))
        ram_w = power_w(data.ram_energy, duration_s)
        ram = Component(data.ram_energy, ram_w, peak_w(samples, 2),
                        ram_method(hardware, data.ram_power, data.ram_total_size))
        gpu = None
        gpu_count = int(data.gpu_count or 0)
        if gpu_count:
            gpu = Component(data.gpu_energy, power_w(data.gpu_energy, duration_s), None,
                            Method("measured", f"codecarbon GPU reading: {data.gpu_model}"))
        return HostReading(cpu, ram, gpu, gpu_count, data.emissions, meter)
