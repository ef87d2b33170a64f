"""The host meter ``planner measure`` uses by default: codecarbon's methods, without its start-up.

It applies what codecarbon would do on this machine (its hardware detection, cached per
machine by hostfacts.py) to counters planner reads itself, so nothing slow stands between
``planner measure`` and the command:

- CPU **measured**: RAPL package energy counters (``energy_uj``, wrap-around handled with
  ``max_energy_range_uj``), read when the command starts, every interval and at the end;
- CPU **estimated**: codecarbon's CPU-load model, power = TDP x (0.1 + 0.9 x load^3) for each
  interval, with the machine-wide load of that interval from the kernel's cumulative CPU
  times (``/proc/stat``; psutil elsewhere), the same busy/total split as codecarbon's
  ``SystemCPULoadMeter``; ``constant``: 50% of TDP;
- RAM **estimated**: codecarbon's RAM model power for this machine's memory size x duration.

No second of the run is lost: the counters are cumulative and are read just before the command
starts; the detection that supplies the TDP (only on the first run on a machine) runs on a
thread beside the command and is needed only when the energy is computed at the end.
"""

from __future__ import annotations

import glob
import os
import threading
import time
from collections.abc import Callable
from itertools import pairwise

from planner.measurement.hostfacts import FactsLoader, HostFacts
from planner.measurement.readings import J_PER_KWH, HostReading, power_w
from planner.measurement.results import Component, Method

CONSTANT_SHARE = 0.5  # codecarbon's CONSUMPTION_PERCENTAGE_CONSTANT
CLOCK_TICKS = float(os.sysconf("SC_CLK_TCK")) if hasattr(os, "sysconf") else 100.0


def own_cpu_seconds() -> float:
    """CPU seconds of this process and its waited-for children (the measured command)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def cpu_times() -> tuple[float, float]:
    """Machine-wide (busy, total) CPU time in s, as codecarbon counts them:
    total excludes guest time (already in user/nice), busy = total - idle - iowait."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = [float(x) / CLOCK_TICKS for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        import psutil

        t = psutil.cpu_times()
        fields = list(t)
        names = t._fields
        get = dict(zip(names, fields)).get
        total = sum(fields) - (get("guest") or 0.0) - (get("guest_nice") or 0.0)
        return total - t.idle - (get("iowait") or 0.0), total
    fields += [0.0] * (10 - len(fields))
    user, nice, system, idle, iowait, irq, softirq, steal, guest, guest_nice = fields[:10]
    total = sum(fields[:10]) - guest - guest_nice
    return total - idle - iowait, total


def load_factor(load: float) -> float:
    """codecarbon's machine-mode CPU-load model: 0.1 + 0.9 x load^3 (load in 0..1)."""
    return 0.1 + 0.9 * min(max(load, 0.0), 1.0) ** 3


class RaplCounters:
    """RAPL package energy counters under ``rapl_dir``: cumulative J since ``start()``."""

    def __init__(self, rapl_dir: str) -> None:
        self.files: list[tuple[str, float]] = []
        for d in sorted(glob.glob(os.path.join(rapl_dir, "*"))):
            name = _text(os.path.join(d, "name"))
            if not name.startswith("package"):
                continue
            top = _number(os.path.join(d, "max_energy_range_uj"))
            if _number(os.path.join(d, "energy_uj")) is not None:
                self.files.append((os.path.join(d, "energy_uj"), top or 0.0))
        self._last: list[float | None] = []
        self.joules = 0.0

    def start(self) -> None:
        self._last = [_number(p) for p, _ in self.files]
        self.joules = 0.0

    def read(self) -> float:
        """Add the energy since the last read (a counter that went down wrapped once)."""
        for i, (path, top) in enumerate(self.files):
            now, before = _number(path), self._last[i]
            if now is None or before is None:
                continue
            delta = now - before if now >= before else now + top - before
            self.joules += delta / 1e6
            self._last[i] = now
        return self.joules


def _ours(detail: str) -> str:
    """codecarbon's label with planner's source of the load (the same kernel counters)."""
    return detail.replace("machine-wide load from psutil",
                          "machine-wide load from the kernel's CPU times")


def _text(path: str) -> str:
    try:
        with open(path, encoding="ascii") as f:
            return f.read().strip()
    except (OSError, UnicodeDecodeError):
        return ""


def _number(path: str) -> float | None:
    try:
        return float(_text(path))
    except ValueError:
        return None


class CounterMeter:
    """Host meter from cumulative counters, sampled every ``interval_s`` on a thread."""

    name = "host"

    def __init__(self, interval_s: float, loader: FactsLoader | None = None,
                 read_cpu: Callable[[], tuple[float, float]] = cpu_times,
                 clock: Callable[[], float] = time.monotonic,
                 read_own: Callable[[], float] = own_cpu_seconds) -> None:
        self.interval_s, self.read_cpu, self.clock = interval_s, read_cpu, clock
        self.read_own = read_own
        self.loader = loader or FactsLoader()
        self.rapl: RaplCounters | None = None
        self._samples: list[tuple[float, float, float, float]] = []  # t, busy, total, rapl J
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._own0 = 0.0

    def start(self) -> None:
        self._own0 = self.read_own()
        rapl_dir = self.loader.rapl_dir
        rapl = RaplCounters(rapl_dir)
        self.rapl = rapl if rapl.files else None
        if self.rapl:
            self.rapl.start()
        self._sample()
        self.loader.start()  # cache read (~1 ms) or detection on a thread
        self._thread = threading.Thread(target=self._loop, name="planner-host", daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        busy, total = self.read_cpu()
        joules = self.rapl.read() if self.rapl else 0.0
        self._samples.append((self.clock(), busy, total, joules))

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def stop(self, duration_s: float) -> HostReading:
        self._stop.set()
        if self._thread:
            self._thread.join()
        self._sample()
        facts = self.loader.result()
        span = max(self._samples[-1][0] - self._samples[0][0], 1e-9)
        if facts is None:
            why = self.loader.error or "no hardware facts"
            failed = Component(None, None, None, Method("failed", why))
            return HostReading(failed, failed, None, 0, None, "planner host meter")
        note = f"hardware detected by {facts.detected_by} on {facts.detected_at[:10]}"
        share = self.process_share()
        cpu = self._cpu(facts, span, note)
        if share is not None and cpu.kwh is not None:
            detail = (f"{cpu.method.detail}; the command's processes used {share:.0%} of the "
                      f"machine's busy CPU time (process-share estimate "
                      f"{cpu.kwh * share * J_PER_KWH:.3g} J, in energy.cpu_process_share)")
            cpu = Component(cpu.kwh, cpu.avg_power_w, cpu.peak_power_w,
                            Method(cpu.method.kind, detail))
        ram_kwh = facts.ram_w * duration_s / J_PER_KWH if facts.ram_w is not None else None
        ram = Component(ram_kwh, facts.ram_w, facts.ram_w, Method(
            "estimated" if ram_kwh is not None else "failed", f"{facts.ram_detail}; {note}"))
        meter = f"planner host meter ({facts.detected_by}'s methods; {self.loader.source})"
        return HostReading(cpu, ram, None, 0, None, meter, share)

    def process_share(self) -> float | None:
        """The command's share (0..1) of the machine's busy CPU time over the run."""
        busy = self._samples[-1][1] - self._samples[0][1]
        own = self.read_own() - self._own0
        if busy <= 0:
            return None
        return min(max(own / busy, 0.0), 1.0)

    def _cpu(self, facts: HostFacts, span: float, note: str) -> Component:
        pairs = list(pairwise(self._samples))
        if facts.cpu_mode == "intel_rapl" and self.rapl:
            kwh = self._samples[-1][3] / J_PER_KWH
            rates = [(b[3] - a[3]) / (b[0] - a[0]) for a, b in pairs if b[0] - a[0] > 1e-3]
            detail = ("RAPL package energy counters (/sys/class/powercap), machine-wide, "
                      f"read by planner; {note}")
            return Component(kwh, power_w(kwh, span), max(rates, default=None),
                             Method("measured", detail))
        if facts.tdp_w is None or facts.cpu_mode not in ("cpu_load", "constant"):
            return Component(None, None, None, Method(
                "failed", f"codecarbon's CPU mode '{facts.cpu_mode}' has no TDP model; "
                          "use --meter codecarbon"))
        watts: list[tuple[float, float]] = []  # (seconds, W) per interval
        for a, b in pairs:
            dt = b[0] - a[0]
            if facts.cpu_mode == "constant":
                watts.append((dt, facts.tdp_w * CONSTANT_SHARE))
                continue
            total = b[2] - a[2]
            load = (b[1] - a[1]) / total if total > 0 else 0.0
            watts.append((dt, facts.tdp_w * load_factor(load)))
        joules = sum(dt * w for dt, w in watts)
        peak = max((w for dt, w in watts if dt > 1e-3), default=None)
        kwh = joules / J_PER_KWH
        return Component(kwh, power_w(kwh, span), peak,
                         Method("estimated", _ours(facts.cpu_detail) + f"; {note}"))
