"""Host energy meters (CPU and RAM, and GPUs when NVML is not available) behind one interface.

``HostMeter.start()`` / ``stop(duration_s)`` (readings.py) bracket the measured work and return a
``HostReading``. Three implementations: ``CounterMeter`` (the default: codecarbon's methods
on counters planner reads, with codecarbon's hardware detection cached per machine; see
hostmeter.py),
``CodecarbonMeter`` (codecarbon's offline tracker itself, 1-2 s to start; see
codecarbon_meter.py) and ``CpuTimeMeter``, a clearly-labelled estimate from CPU time used when
codecarbon is not installed or ``meter="cpu-time"`` is asked for (fast; used by tests).
"""

from __future__ import annotations

import importlib.util
import os
import sys
import time

from planner.errors import SpecError
from planner.measurement.readings import J_PER_KWH, HostMeter, HostReading, power_w
from planner.measurement.results import Component, Method

__all__ = ["J_PER_KWH", "HostMeter", "HostReading", "power_w", "CpuTimeMeter", "host_meter",
           "codecarbon_available", "Stopwatch"]

# codecarbon's fallback for an unknown CPU: 4 W per thread (core/cpu.py DEFAULT_POWER_PER_CORE).
W_PER_BUSY_THREAD = 4.0
METERS = ("auto", "host", "codecarbon", "cpu-time")


def _cpu_seconds() -> float:
    """CPU seconds (user + system) of this process and its waited-for children."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class CpuTimeMeter:
    """Estimated CPU energy: CPU seconds used x 4 W per busy thread; RAM not estimated.

    Counts this process and the children it has waited for (the measured command and its
    waited-for descendants), not the rest of the machine.
    """

    name = "cpu-time"

    def __init__(self, why: str = "--meter cpu-time") -> None:
        self.why = why
        self._cpu0 = 0.0

    def start(self) -> None:
        self._cpu0 = _cpu_seconds()

    def stop(self, duration_s: float) -> HostReading:
        cpu_s = max(_cpu_seconds() - self._cpu0, 0.0)
        kwh = cpu_s * W_PER_BUSY_THREAD / J_PER_KWH
        cpu = Component(kwh, power_w(kwh, duration_s), None, Method(
            "estimated", f"CPU time {cpu_s:.3g} s x {W_PER_BUSY_THREAD:g} W per busy thread "
                         f"(codecarbon's figure for an unknown CPU), not a measurement; "
                         f"cpu-time meter ({self.why})"))
        ram = Component(None, None, None, Method(
            "none", f"not measured: the cpu-time meter ({self.why}) does not estimate RAM"))
        return HostReading(cpu, ram, None, 0, None, "cpu-time")


class NotMeteredHere:
    """The host meter of a rank that does not meter: another process meters its node."""

    name = "none"

    def __init__(self, why: str) -> None:
        self.why = why

    def start(self) -> None:
        pass

    def stop(self, duration_s: float) -> HostReading:
        none = Component(None, None, None, Method("none", self.why))
        return HostReading(none, none, None, 0, None, "none (rank record)")


def codecarbon_available() -> bool:
    """True when codecarbon can be imported (checked without importing it)."""
    return importlib.util.find_spec("codecarbon") is not None


def host_meter(kind: str, country_iso3: str | None, interval_s: float,
               gpu_ids: list[int] | None, redetect: bool = False) -> HostMeter:
    """The host meter for ``kind`` (auto, host, codecarbon, cpu-time); SpecError if
    unavailable. auto is the host meter (codecarbon's methods on planner's counters, fast)
    on Linux when codecarbon is installed for the one-time detection, codecarbon's tracker
    on other systems, else the cpu-time estimate."""
    if kind not in METERS:
        raise SpecError(f"unknown meter '{kind}'; choose one of {', '.join(METERS)}")
    if kind == "cpu-time":
        return CpuTimeMeter()
    if not codecarbon_available():
        if kind in ("codecarbon", "host"):
            raise SpecError(f"the {kind} meter needs codecarbon: "
                            "pip install 'planner[profile]' (or use --meter cpu-time)")
        return CpuTimeMeter("codecarbon is not installed: pip install 'planner[profile]'")
    # The host meter reads Linux counters (/proc/stat, RAPL); elsewhere codecarbon's own
    # tracker reads what that platform has (powermetrics, the Windows EMI).
    if kind == "codecarbon" or (kind == "auto" and not sys.platform.startswith("linux")):
        from planner.measurement.codecarbon_meter import CodecarbonMeter
        return CodecarbonMeter(country_iso3, interval_s, gpu_ids)
    from planner.measurement.hostfacts import FactsLoader
    from planner.measurement.hostmeter import CounterMeter
    return CounterMeter(interval_s, FactsLoader(refresh=redetect))


class Stopwatch:
    """Wall clock of the measured work: monotonic duration in s and UTC timestamps."""

    def __init__(self) -> None:
        self.t0 = self.t1 = time.monotonic()
        self.started_at = self.ended_at = time.time()

    def start(self) -> None:
        self.t0, self.started_at = time.monotonic(), time.time()

    def stop(self) -> float:
        self.t1, self.ended_at = time.monotonic(), time.time()
        return self.duration_s

    @property
    def duration_s(self) -> float:
        return max(self.t1 - self.t0, 0.0)
