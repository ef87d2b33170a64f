"""GPU energy from NVML or amdsmi, sampled on a thread, for the GPUs the command uses.

``GpuBackend`` is the small interface the sampler needs; ``NvmlBackend`` implements it with
``pynvml`` (package nvidia-ml-py, installed with codecarbon), ``AmdSmiBackend`` (gpu_amd.py)
with AMD's ``amdsmi``, and tests use fakes. Energy per GPU comes from the driver's energy
counter (NVML's total energy, Volta and later; amdsmi's energy accumulator) when the GPU has
one, else from its power readings integrated over time with the trapezoid rule. Both are
device-level readings: they include anything else running on the same GPU.

Which GPUs are the command's (``attribute``): those its visibility variables leave it
(CUDA_VISIBLE_DEVICES; ROCR_VISIBLE_DEVICES then HIP_VISIBLE_DEVICES on AMD) when one is set;
else, where the driver lists processes per GPU, the GPUs it saw the command's processes on;
else every GPU on the machine, said so (on a shared node, set the visibility variable).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Protocol

from planner.measurement.readings import J_PER_KWH
from planner.measurement.results import Component, GpuEnergy, Method


@dataclass(frozen=True)
class GpuDevice:
    """One GPU as NVML enumerates it."""

    index: int
    uuid: str
    name: str
    vendor: str = "nvidia"  # nvidia | amd: which visibility variables apply


class GpuBackend(Protocol):
    """What the sampler reads; power in W, the energy counter in J (None when unsupported).

    Optional: ``label`` ("NVML", "amdsmi") and ``process_ids(index)`` -> the PIDs with a
    context on that GPU, None when the driver cannot say."""

    def devices(self) -> list[GpuDevice]: ...

    def power_w(self, index: int) -> float | None: ...

    def energy_j(self, index: int) -> float | None: ...

    def close(self) -> None: ...


class NvmlBackend:
    """``GpuBackend`` over pynvml. ``open()`` returns (backend or None, why not)."""

    label = "NVML"

    def __init__(self, nvml) -> None:
        self._nvml = nvml
        self._handles = [nvml.nvmlDeviceGetHandleByIndex(i)
                         for i in range(nvml.nvmlDeviceGetCount())]

    @classmethod
    def open(cls) -> tuple[NvmlBackend | None, str]:
        try:
            import pynvml
        except ImportError:
            return None, "pynvml not installed (pip install nvidia-ml-py)"
        try:
            pynvml.nvmlInit()
            return cls(pynvml), "NVML"
        except pynvml.NVMLError as e:  # LibraryNotFound, DriverNotLoaded, ...
            return None, f"NVML unavailable: {e}"

    @staticmethod
    def _text(value) -> str:
        return value.decode() if isinstance(value, bytes) else str(value)

    def devices(self) -> list[GpuDevice]:
        nv = self._nvml
        return [GpuDevice(i, self._text(nv.nvmlDeviceGetUUID(h)),
                          self._text(nv.nvmlDeviceGetName(h)))
                for i, h in enumerate(self._handles)]

    def power_w(self, index: int) -> float | None:
        try:
            return self._nvml.nvmlDeviceGetPowerUsage(self._handles[index]) / 1000.0
        except self._nvml.NVMLError:
            return None

    def energy_j(self, index: int) -> float | None:
        try:
            return self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handles[index]) / 1000.0
        except self._nvml.NVMLError:  # NotSupported before Volta
            return None

    def process_ids(self, index: int) -> set[int] | None:
        """PIDs with a compute or graphics context on the GPU (None: not supported)."""
        nv, h = self._nvml, self._handles[index]
        pids: set[int] = set()
        try:
            for fn in (nv.nvmlDeviceGetComputeRunningProcesses,
                       nv.nvmlDeviceGetGraphicsRunningProcesses):
                pids.update(p.pid for p in fn(h))
        except (nv.NVMLError, AttributeError):
            return None
        return pids

    def close(self) -> None:
        with contextlib.suppress(self._nvml.NVMLError):
            self._nvml.nvmlShutdown()


def visibility(devices: Sequence[GpuDevice], env) -> tuple[list[GpuDevice], str | None]:
    """The GPUs the visibility variables leave, and which variables did (None: none set).

    NVIDIA: CUDA_VISIBLE_DEVICES. AMD: ROCR_VISIBLE_DEVICES first (the runtime's), then
    HIP_VISIBLE_DEVICES (or CUDA_VISIBLE_DEVICES, which HIP also reads) indexes into what it
    left, as the ROCm runtime applies them."""
    amd = any(d.vendor == "amd" for d in devices)
    names = (("ROCR_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES", "CUDA_VISIBLE_DEVICES") if amd
             else ("CUDA_VISIBLE_DEVICES",))
    chosen, used = list(devices), []
    for name in names:
        value = env.get(name)
        if value is None or (name == "CUDA_VISIBLE_DEVICES" and amd and
                             "HIP_VISIBLE_DEVICES" in env):
            continue
        chosen = visible_devices(chosen, value)
        used.append(f"{name}={value!r}")
    return chosen, ", ".join(used) or None


def visible_devices(devices: Sequence[GpuDevice], cuda_visible: str | None) -> list[GpuDevice]:
    """The GPUs a process sees under ``CUDA_VISIBLE_DEVICES`` (None: all of them).

    Entries are indices or GPU UUIDs (or unique UUID prefixes), comma-separated; as in CUDA,
    the first entry that names no device ends the list, so "" and "-1" hide every GPU.
    Indices are taken in NVML (PCI bus) order, which is CUDA's order when
    CUDA_DEVICE_ORDER=PCI_BUS_ID and on machines with one GPU model.
    """
    if cuda_visible is None:
        return list(devices)
    chosen: list[GpuDevice] = []
    for token in (t.strip() for t in cuda_visible.split(",")):
        match = None
        if token.isdigit() and int(token) < len(devices):
            match = devices[int(token)]
        elif token.startswith("GPU-"):
            hits = [d for d in devices if d.uuid.startswith(token)]
            match = hits[0] if len(hits) == 1 else None
        if match is None:
            break
        if match not in chosen:
            chosen.append(match)
    return chosen


def process_tree(root: int) -> set[int]:
    """``root`` and its descendants, from /proc (just ``root`` where /proc is missing)."""
    import os

    children: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return {root}
    for name in entries:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", encoding="ascii", errors="replace") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(name))
    tree, todo = {root}, [root]
    while todo:
        for child in children.get(todo.pop(), ()):
            if child not in tree:
                tree.add(child)
                todo.append(child)
    return tree


def integrate_j(samples: Sequence[tuple[float, float]]) -> float:
    """Energy in J from (time s, power W) samples, trapezoid rule."""
    return sum((t1 - t0) * (p0 + p1) / 2 for (t0, p0), (t1, p1) in pairwise(samples))


class GpuSampler:
    """Samples power of the given GPUs every ``interval_s`` s and reads energy counters."""

    def __init__(self, backend: GpuBackend, devices: Sequence[GpuDevice], interval_s: float,
                 clock: Callable[[], float] = time.monotonic, since: float | None = None
                 ) -> None:
        self.backend, self.devices, self.interval_s, self.clock = \
            backend, list(devices), interval_s, clock
        # When the command started before NVML was ready (``since``, on ``clock``), the gap
        # is filled with each GPU's first power reading x the gap's length, and labelled.
        self.since = since
        self.label = getattr(backend, "label", "NVML")
        # The command's processes (set by the session once it has started), and per GPU
        # whether the driver's process list ever showed one of them (None: no list).
        self.pids: Callable[[], set[int]] | None = None
        self.used: dict[int, bool | None] = {d.index: None for d in devices}
        self._samples: dict[int, list[tuple[float, float]]] = {d.index: [] for d in devices}
        self._start_j: dict[int, float | None] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._t0 = 0.0

    def _sample(self) -> None:
        t = self.clock()
        for d in self.devices:
            p = self.backend.power_w(d.index)
            if p is not None:
                self._samples[d.index].append((t, p))
        self._processes()

    def _processes(self) -> None:
        listing = getattr(self.backend, "process_ids", None)
        ours = self.pids() if self.pids is not None else set()
        if listing is None or not ours:
            return
        for d in self.devices:
            on_gpu = listing(d.index)
            if on_gpu is not None:
                self.used[d.index] = bool(self.used[d.index]) or bool(on_gpu & ours)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def start(self) -> None:
        """Read the energy counters and start sampling."""
        self._t0 = self.clock()
        self._start_j = {d.index: self.backend.energy_j(d.index) for d in self.devices}
        self._sample()
        self._thread = threading.Thread(target=self._loop, name="planner-gpu", daemon=True)
        self._thread.start()

    def stop(self) -> tuple[GpuEnergy, ...]:
        """Stop sampling; per-GPU energy in kWh with how it was obtained."""
        self._stop.set()
        if self._thread:
            self._thread.join()
        self._sample()
        end_j = {d.index: self.backend.energy_j(d.index) for d in self.devices}
        start = self._t0 if self.since is None else min(self.since, self._t0)
        duration = max(self.clock() - start, 1e-9)
        return tuple(self._energy(d, end_j[d.index], duration) for d in self.devices)

    def _gap(self, samples: list[tuple[float, float]]) -> tuple[float, str]:
        """Energy in J before the first reading (command start to NVML ready), and its note."""
        gap_s = self._t0 - self.since if self.since is not None else 0.0
        if gap_s <= 0 or not samples:
            return 0.0, ""
        return gap_s * samples[0][1], (f"; the {gap_s:.3g} s between the command's start and "
                                       f"{self.label}'s first reading at that first power "
                                       "reading")

    def _energy(self, d: GpuDevice, e1: float | None, duration_s: float) -> GpuEnergy:
        samples = self._samples[d.index]
        peak = max((p for _, p in samples), default=None)
        e0 = self._start_j.get(d.index)
        gap_j, gap_note = self._gap(samples)
        if e0 is not None and e1 is not None and e1 >= e0:
            joules = e1 - e0 + gap_j
            counter = ("NVML total-energy counter" if self.label == "NVML" else
                       f"{self.label} energy counter")
            method = Method("measured", counter + gap_note)
        elif len(samples) >= 2:
            joules = integrate_j(samples) + gap_j
            method = Method("measured", f"{self.label} power readings every "
                                        f"{self.interval_s:g} s, "
                                        "integrated (no energy counter on this GPU)" + gap_note)
        else:
            return GpuEnergy(d.index, d.uuid, d.name, None, None, peak,
                             Method("failed", f"{self.label} gave no energy or power "
                                               "reading"))
        return GpuEnergy(d.index, d.uuid, d.name, joules / J_PER_KWH, joules / duration_s,
                         peak, method)


def attribute(gpus: Sequence[GpuEnergy], by_env: str | None,
              used: dict[int, bool | None], total: int) -> tuple[tuple[GpuEnergy, ...], str]:
    """The GPUs counted as the command's, and how they were chosen (see module docstring)."""
    if by_env is not None:
        return tuple(gpus), f"the {len(gpus)} of {total} GPU(s) visible to it ({by_env})"
    mine = [g for g in gpus if used.get(g.index)]
    listed = any(v is not None for v in used.values())
    if mine:
        return tuple(mine), (f"the {len(mine)} of {total} GPU(s) the driver listed its "
                             "processes on")
    why = ("the driver listed none of its processes (a CPU-only command, or a PID namespace "
           "that hides them)" if listed else "no process list")
    return tuple(gpus), (f"all {total} GPU(s) on the machine: no visibility variable and "
                         f"{why}; on a shared node set CUDA_VISIBLE_DEVICES")


def gpu_component(gpus: Sequence[GpuEnergy], attribution: str | None = None) -> Component:
    """All visible GPUs as one component: summed kWh and average W, one method label.

    The peak is the sum of per-GPU peaks, an upper bound of the simultaneous peak.
    """
    known = [g for g in gpus if g.kwh is not None]
    if not known:
        return Component(None, None, None, Method("failed", "the GPU meter gave no reading"))
    names = sorted({g.model for g in gpus})
    kinds = sorted({g.method.detail.split(" (")[0].split("; ")[0] for g in known})
    detail = f"{' + '.join(kinds)}, {len(gpus)} GPU(s): {', '.join(names)}"
    gap = next((g.method.detail.split("; ", 1)[1] for g in known
                if "; the " in g.method.detail), None)
    if gap:
        detail += f"; {gap}"
    if len(known) < len(gpus):
        detail += f"; {len(gpus) - len(known)} GPU(s) gave no reading and are left out"
    if attribution:
        detail += f"; counted: {attribution}"
    peaks = [g.peak_power_w for g in known if g.peak_power_w is not None]
    return Component(sum(g.kwh for g in known), sum(g.avg_power_w or 0.0 for g in known),
                     sum(peaks) if peaks else None, Method("measured", detail))
