"""One measurement from start to ledger: used by ``planner measure`` and ``planner.measure()``.

Order: resolve the options (bad input fails here, before anything runs), prove the ledger is
writable, set up the meters, start them, run the work, stop them, build the record, append it
to the ledger. A run that was interrupted or failed is still recorded, marked incomplete.
A record the ledger cannot take (locked, deleted, replaced by a directory) is written to a
fallback JSON file instead (``save_fallback``): ``planner-run-ID.json`` in the current
directory, else in the temporary directory.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import socket
import tempfile
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from planner.errors import PlannerError
from planner.measurement.context import MeasureOptions, resolve_context
from planner.measurement.energy import NotMeteredHere, Stopwatch, host_meter
from planner.measurement.extrapolate import Sample, extrapolate
from planner.measurement.gpu_open import open_backend
from planner.measurement.grid_live import live_grid
from planner.measurement.job import detect_job
from planner.measurement.gpu import (
    GpuBackend,
    GpuSampler,
    attribute,
    process_tree,
    visibility,
)
from planner.measurement.ledger import Ledger, LedgerError
from planner.measurement.record import (
    GpuSide,
    carbon_report,
    cost_report,
    energy_report,
    gpu_part,
)
from planner.measurement.results import (
    CarbonReport,
    CostReport,
    EnergyReport,
    Extrapolation,
    RunRecord,
)


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="milliseconds")


class Session:
    """A prepared measurement: ``start()``, run the work, then ``finish(...)``."""

    def __init__(self, options: MeasureOptions, ledger: Path | None,
                 gpu_backend: GpuBackend | None = None) -> None:
        self.options = options
        self.context = resolve_context(options)
        self.job = detect_job(os.environ, options.job)
        self.live = live_grid(options.grid_hourly, options.grid_live, options.grid_zone,
                              options.region, os.environ)
        self.grid_note: str | None = None  # why the hourly figures were not used
        self.ledger = Ledger.open_for_writing(ledger) if ledger is not None else None
        self.backend: GpuBackend | None = None
        self.devices: list = []
        self.sampler: GpuSampler | None = None
        self.gpu_note = ""
        self._gpu_thread: threading.Thread | None = None
        self._gpu_given = gpu_backend
        self.root_pid: Callable[[], int | None] | None = None  # the command's PID, once known
        if self.job is not None and not self.job.meters_node:
            self._rank_record_setup()
            return
        # codecarbon's tracker needs the visible GPUs when it is built; a test backend is
        # instant. Otherwise NVML opens on a thread beside the command (session.start()).
        self._gpu_now = options.meter == "codecarbon" or gpu_backend is not None
        if self._gpu_now:
            self._gpu_setup(gpu_backend)
        cuda = os.environ.get("CUDA_VISIBLE_DEVICES")
        ids = [d.index for d in self.devices] if cuda is not None and self.devices else None
        self.host = host_meter(options.meter, self.context.country_iso3, options.interval_s,
                               ids, options.redetect)
        self.clock = Stopwatch()

    def _rank_record_setup(self) -> None:
        """A rank that does not meter: its node's local rank 0 does (no double counting)."""
        why = (f"not metered by this rank: local rank 0 of node {self.job.node} meters "
               f"the node for job {self.job.id}")
        self.host = NotMeteredHere(why)
        self.gpu_note = why
        self._gpu_now = True
        self.clock = Stopwatch()

    def _gpu_setup(self, backend: GpuBackend | None, since: float | None = None) -> None:
        why = "test backend"
        if backend is None:
            backend, why = open_backend()
        self.backend = backend
        self.devices = []
        self.gpu_by_env: str | None = None
        self.gpu_total = 0
        self.gpu_note = f"no GPU found ({why})"
        if backend is not None:
            every = backend.devices()
            self.gpu_total = len(every)
            self.devices, self.gpu_by_env = visibility(every, os.environ)
            label = getattr(backend, "label", "NVML")
            self.gpu_note = (f"no GPU visible: {self.gpu_by_env} hides all {len(every)}"
                             if every else f"{label} found no GPU")
        self.sampler = (GpuSampler(backend, self.devices, self.options.interval_s,
                                   since=since) if self.devices else None)
        if self.sampler is not None:
            self.sampler.pids = self._command_pids

    def _command_pids(self) -> set[int]:
        """The measured command's processes: its tree (a command) or this process (a block)."""
        root = self.root_pid() if self.root_pid is not None else os.getpid()
        return process_tree(root) if root else set()

    def _gpu_start_late(self, since: float) -> None:
        try:
            self._gpu_setup(None, since)
            if self.sampler:
                self.sampler.start()
        except Exception as e:  # noqa: BLE001 - a GPU meter failure must not lose the run
            self.sampler, self.gpu_note = None, f"GPU meter failed: {type(e).__name__}: {e}"

    def start(self) -> None:
        """Start the meters and the clock, then return at once so the command can start.

        The host meter reads its cumulative counters here (about 1 ms; codecarbon's own
        tracker, --meter codecarbon, is set up first and not timed). NVML opens on a thread
        beside the command; the seconds before its first reading are filled in (gpu.py)."""
        if self.options.meter == "codecarbon":
            self.host.start()
            if self.sampler:
                self.sampler.start()
            self.clock.start()
            return
        if self._gpu_now and self.sampler:  # already set up (a test backend): no gap
            self.sampler.start()
        self.clock.start()
        self.host.start()
        if self._gpu_now:
            return
        self._gpu_thread = threading.Thread(target=self._gpu_start_late,
                                            args=(self.clock.t0,), name="planner-gpu",
                                            daemon=True)
        self._gpu_thread.start()

    def finish(self, command: Sequence[str], command_line: str, exit_code: int | None,
               signal: str | None = None, interrupted_by: str | None = None,
               error: str | None = None) -> RunRecord:
        """Stop the meters, build the record and append it to the ledger.

        When the ledger cannot take it, the record is saved by ``save_fallback`` and the
        LedgerError raised says where."""
        record = self.build(command, command_line, exit_code, signal, interrupted_by, error)
        self.save(record)
        return record

    def save(self, record: RunRecord, should_stop: Callable[[], bool] | None = None) -> None:
        """Append ``record`` to the ledger (if any); LedgerError naming the fallback file
        the record went to instead when that fails."""
        if self.ledger is None:
            return
        data = record.to_dict()
        try:
            self.ledger.add(data, should_stop)
        except PlannerError as e:
            where = save_fallback(data)
            kept = f"the record is saved in {where}" if where else "the record could not be saved"
            raise LedgerError(f"{e}; {kept}") from None

    def build(self, command: Sequence[str], command_line: str, exit_code: int | None,
              signal: str | None = None, interrupted_by: str | None = None,
              error: str | None = None) -> RunRecord:
        """Stop the meters and build the record (nothing is written)."""
        duration = self.clock.stop()
        host = self.host.stop(duration)  # its last counter reading: as soon as the work ends
        if self._gpu_thread is not None:
            self._gpu_thread.join()
        readings = self.sampler.stop() if self.sampler else None
        if self.backend is not None:
            self.backend.close()
        attribution = None
        if readings:
            readings, attribution = attribute(readings, self.gpu_by_env, self.sampler.used,
                                              self.gpu_total)
        side = GpuSide(readings if self.backend else None, len(readings or ()),
                       self.gpu_note, attribution)
        rank_only = isinstance(self.host, NotMeteredHere)
        gpu, gpu_count = (host.cpu, 0) if rank_only else gpu_part(host, side)
        meter = host.meter + (f" + {self.sampler.label}" if readings else "")
        energy = energy_report(host, gpu, readings or (), self.context.pue, meter)
        carbon = carbon_report(energy, self._grid_context(), host.codecarbon_kg_co2e)
        cost = cost_report(self.options, self.context, gpu_count, duration)
        if rank_only:  # the node's devices are billed once, on the metering record
            cost = CostReport(None, cost.usd_per_device_hour, 0, None, cost.hardware,
                              cost.price_source, self.host.why.replace("metered", "billed")
                              .replace("meters", "bills"))
        complete = exit_code in (0, None) and interrupted_by is None and error is None
        record = RunRecord(
            id=uuid.uuid4().hex[:12], label=self.options.label, command=tuple(command),
            command_line=command_line, cwd=os.getcwd(), host=socket.gethostname(),
            started_at=_iso(self.clock.started_at), ended_at=_iso(self.clock.ended_at),
            duration_s=duration, exit_code=exit_code, signal=signal,
            interrupted_by=interrupted_by, complete=complete, error=error, energy=energy,
            carbon=carbon, cost=cost, extrapolation=self._extrapolation(duration, energy,
                                                                        carbon, cost),
            versions=self._versions(host.meter), job=self.job,
            training=self.options.training)
        return record

    def _grid_context(self):
        """The context with the run's hourly intensity, when asked for and available."""
        if self.live is None:
            return self.context
        g, how = self.live.intensity(self.clock.started_at, self.clock.ended_at)
        if g is None:
            self.grid_note = f"{how}; used {self.context.grid_source}"
            return replace(self.context, grid_source=f"{self.context.grid_source} "
                                                     f"(hourly figures not used: {how})")
        return replace(self.context, grid_g_co2e_per_kwh=g, grid_source=how)

    def _extrapolation(self, duration: float, energy: EnergyReport, carbon: CarbonReport,
                       cost: CostReport) -> Extrapolation | None:
        o = self.options
        if o.extrapolate_to is None:
            return None
        unit, measured = ("tokens", o.tokens) if o.tokens is not None else ("steps", o.steps)
        sample = Sample(duration, cost.device_hours, energy.kwh, energy.it_kwh,
                        carbon.kg_co2e, cost.total_usd)
        from planner.measurement.compare import planner_estimate  # planning: only here

        comparison = planner_estimate(o, self.context, cost.devices)
        x = extrapolate(sample, unit, measured, o.extrapolate_to, comparison)
        inputs = {"model": o.model, "hardware": o.hardware, "region": o.region,
                  "pue": self.context.pue, "grid_g_co2e_per_kwh": o.grid_g_co2e_per_kwh,
                  "price_tier": o.price_tier, "price_per_hour": o.price_per_hour,
                  "profiles_dirs": list(o.profiles_dirs), "training": o.training}
        return replace(x, inputs=inputs)

    @staticmethod
    def _versions(meter: str) -> dict[str, str | None]:
        from planner import __version__
        cc = meter.split()[1] if meter.startswith("codecarbon ") else None
        return {"planner": __version__, "codecarbon": cc, "python": platform.python_version()}


def command_line(argv: Sequence[str]) -> str:
    """The command as a shell would need it typed."""
    return shlex.join(argv)


FALLBACK_NAME = "planner-run-{id}.json"


def save_fallback(record: dict[str, Any], dirs: Sequence[str | os.PathLike] | None = None
                  ) -> Path | None:
    """Write a record the ledger (or --output) could not take to ``planner-run-ID.json`` in
    the current directory, else the temporary directory; the path, or None if neither works.

    Created exclusively (never replaces a file) and flushed to disk; the file holds the same
    object as ``planner measure --format json``."""
    text = json.dumps(record, indent=2) + "\n"
    name = FALLBACK_NAME.format(id=record.get("id") or uuid.uuid4().hex[:12])
    for d in dirs if dirs is not None else (os.getcwd(), tempfile.gettempdir()):
        path = Path(d) / name
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except OSError:
            continue
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
        except OSError:
            path.unlink(missing_ok=True)
            continue
        return path.resolve()
    return None
