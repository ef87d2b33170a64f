"""What the host meter needs to know about this machine, detected once and cached per machine.

codecarbon's hardware detection (lscpu, its CPU table, RAPL probing, ...) takes 1-2 s, most of
``planner measure``'s overhead. ``HostFacts`` keeps the result: the CPU method codecarbon would
use (RAPL counters, or its CPU-load model with a TDP) and its RAM model's power. They are
detected once with codecarbon's own set-up and cached in ``hardware/host-KEY.json`` under
``$PLANNER_CACHE_DIR`` (else ``$XDG_CACHE_HOME/planner``, else ``~/.cache/planner``; an empty
PLANNER_CACHE_DIR turns the cache off), written atomically. ``KEY`` hashes what the facts depend on (host name,
CPU model and count, memory size, RAPL files, codecarbon version), so a hardware change or a
codecarbon upgrade starts a fresh detection instead of reusing a stale one.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import platform
import threading
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

CACHE_ENV = "PLANNER_CACHE_DIR"
FORMAT = 1
RAPL_DIR = "/sys/class/powercap/intel-rapl/subsystem"


@dataclass(frozen=True)
class HostFacts:
    """The host meter's inputs for this machine. Power in W, memory in GB."""

    cpu_mode: str  # codecarbon's: intel_rapl | cpu_load | constant | other
    cpu_model: str
    tdp_w: float | None  # whole machine, as codecarbon uses it
    cpu_detail: str  # codecarbon's method, as planner labels it
    rapl_dir: str | None
    ram_w: float | None
    ram_gb: float | None
    ram_detail: str
    detected_by: str  # e.g. "codecarbon 3.3.2"
    detected_at: str  # ISO 8601, UTC


def cache_dir() -> Path | None:
    """$PLANNER_CACHE_DIR/hardware, else $XDG_CACHE_HOME/planner/hardware, else
    ~/.cache/planner/hardware; None (no cache: detect every time) when PLANNER_CACHE_DIR is
    set to an empty string, as for the parse cache."""
    explicit = os.environ.get(CACHE_ENV)
    if explicit is not None:
        return Path(explicit).expanduser() / "hardware" if explicit else None
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "planner" / "hardware"


def _read(path: str, limit: int = 1 << 16) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read(limit)
    except OSError:
        return ""


def _first(text: str, prefix: str) -> str:
    return next((line.split(":", 1)[1].strip() for line in text.splitlines()
                 if line.startswith(prefix)), "")


def _codecarbon_version() -> str | None:
    """codecarbon's version from its metadata, without importing it (None: not installed)."""
    from importlib.util import find_spec

    spec = find_spec("codecarbon")
    if spec is None or not spec.origin:
        return None
    init = Path(spec.origin).with_name("_version.py")
    text = _read(str(init))
    for line in text.splitlines():
        if line.startswith("__version__"):
            return line.split("=", 1)[1].strip().strip("\"'")
    return "unknown"


def machine_key(rapl_dir: str = RAPL_DIR) -> tuple[str, dict[str, object]]:
    """A short hash of what the facts depend on, and those inputs (read in about 1 ms)."""
    inputs = {
        "format": FORMAT, "host": platform.node(), "machine": platform.machine(),
        "cpus": os.cpu_count(), "cpu_model": _first(_read("/proc/cpuinfo"), "model name"),
        "mem_total": _first(_read("/proc/meminfo", 4096), "MemTotal"),
        "rapl": sorted(p for p in glob.glob(os.path.join(rapl_dir, "*", "energy_uj"))
                       if os.access(p, os.R_OK)),
        "codecarbon": _codecarbon_version(),
        "slurm_mem": os.environ.get("SLURM_MEM_PER_NODE"),
    }
    text = json.dumps(inputs, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16], inputs


def cache_path(key: str) -> Path | None:
    where = cache_dir()
    return where / f"host-{key}.json" if where is not None else None


def load_cached(key: str) -> HostFacts | None:
    """The cached facts for ``key``, or None (no cache, absent, unreadable, another format)."""
    path = cache_path(key)
    if path is None:
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("format") != FORMAT:
            return None
        return HostFacts(**data["facts"])
    except (OSError, ValueError, TypeError, KeyError):
        return None


def save(key: str, inputs: dict[str, object], facts: HostFacts) -> Path | None:
    """Write the cache file atomically; its path, or None when there is no cache or it
    cannot be written (the run goes on; the next one detects again)."""
    from planner.errors import PlannerError
    from planner.fileio import write_text_atomic

    path = cache_path(key)
    if path is None:
        return None
    text = json.dumps({"format": FORMAT, "key_inputs": inputs, "facts": asdict(facts)},
                      indent=2) + "\n"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, text)
    except (OSError, PlannerError):
        return None
    return path


def detect_with_codecarbon(version: str | None) -> HostFacts:
    """Run codecarbon's hardware set-up (offline, machine mode) and keep what it chose."""
    from planner.measurement.codecarbon_meter import (
        cpu_method,
        quiet_codecarbon,
        ram_method,
        tracker_kwargs,
    )
    from codecarbon import OfflineEmissionsTracker

    quiet_codecarbon()
    tracker = OfflineEmissionsTracker(**tracker_kwargs(None, 1.0, None))
    tracker._ensure_hardware_ready()  # the detection alone: no measurement is started
    hardware = list(tracker._hardware)
    cpu = next((hw for hw in hardware if type(hw).__name__ == "CPU"), None)
    ram = next((hw for hw in hardware if type(hw).__name__ == "RAM"), None)
    ram_w = float(ram.total_power().W) if ram is not None else None
    ram_gb = float(ram.machine_memory_GB) if ram is not None else None
    mode = getattr(cpu, "_mode", None) or "other"
    if mode == "intel_rapl" and cpu is not None:
        rapl = getattr(getattr(cpu, "_intel_interface", None), "_lin_rapl_dir", RAPL_DIR)
    else:
        rapl = None
    tdp = getattr(cpu, "_tdp", None)
    return HostFacts(
        cpu_mode=mode, cpu_model=str(getattr(cpu, "_model", None) or "unknown CPU"),
        tdp_w=float(tdp) if tdp is not None else None, cpu_detail=cpu_method(hardware).detail,
        rapl_dir=rapl, ram_w=ram_w, ram_gb=ram_gb,
        ram_detail=ram_method(hardware, ram_w, ram_gb).detail,
        detected_by=f"codecarbon {version}",
        detected_at=datetime.now(timezone.utc).isoformat(timespec="seconds"))


class FactsLoader:
    """The facts for this machine: from the cache at once, else detected on a thread.

    ``start()`` returns immediately; ``result()`` waits for a detection still running.
    ``source`` says where the facts came from ("cache PATH" or "detected now, cached in
    PATH"); ``error`` why there are none."""

    def __init__(self, refresh: bool = False, rapl_dir: str = RAPL_DIR) -> None:
        self.refresh, self.rapl_dir = refresh, rapl_dir
        self.facts: HostFacts | None = None
        self.source = ""
        self.error: str | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        key, inputs = machine_key(self.rapl_dir)
        cached = None if self.refresh else load_cached(key)
        if cached is not None:
            self.facts, self.source = cached, f"cache {cache_path(key)}"
            return
        self._thread = threading.Thread(target=self._detect, args=(key, inputs),
                                        name="planner-detect", daemon=True)
        self._thread.start()

    def _detect(self, key: str, inputs: dict[str, object]) -> None:
        try:
            facts = detect_with_codecarbon(inputs["codecarbon"])  # type: ignore[arg-type]
        except Exception as e:  # noqa: BLE001 - a detection failure must not lose the run
            self.error = f"codecarbon's hardware detection failed: {type(e).__name__}: {e}"
            return
        where = save(key, inputs, facts)
        self.facts = facts
        self.source = (f"detected now, cached in {where}" if where else
                       "detected now, not cached" if cache_path(key) is None else
                       f"detected now (cache {cache_path(key)} not writable)")

    def result(self) -> HostFacts | None:
        if self._thread is not None:
            self._thread.join()
        return self.facts
