"""Energy of the timed validation steps, through the same meters as `planner measure`."""

from __future__ import annotations

from contextlib import ExitStack


class ValidationEnergyMeter:
    """start()/stop() around the warm-up and timed steps; stop() -> (kWh or None, how it was
    obtained, seconds the meters covered).

    On a GPU the GPU's energy (NVML) is returned, to compare with TDP x time; on a CPU the
    machine's IT energy (CPU + RAM). A component obtained from a fallback (TDP or constant
    model) keeps the word 'estimated' in the method, and validate gives it no verdict.
    """

    def __init__(self, region: str | None, gpu: bool, interval_s: float = 1.0):
        self.region, self.gpu, self.interval_s = region, gpu, interval_s
        self._stack: ExitStack | None = None

    def start(self) -> None:
        from planner.measurement.api import measure

        self._stack = ExitStack()
        self._handle = self._stack.enter_context(measure(
            label="planner validate", region=self.region or "US", ledger=False, pue=1.0,
            interval_s=self.interval_s))

    def stop(self) -> tuple[float | None, str, float]:
        """(kWh or None, method, seconds the meters covered)."""
        assert self._stack is not None, "start() first"
        self._stack.close()
        rec = self._handle.result
        e = rec.energy
        parts = ("gpu",) if self.gpu else ("cpu", "ram")
        methods = "; ".join(f"{p} {e.methods[p].label()}" for p in parts if p in e.methods)
        kwh = e.gpu_kwh if self.gpu else e.it_kwh
        return kwh, f"{e.meter}: {methods}", rec.duration_s
