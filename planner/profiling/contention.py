"""Is the CPU busy with other work while we time? (A busy machine makes timings unreliable:
the result is flagged, not hidden.)"""

from __future__ import annotations

import os
import time


class CpuContention:
    """Cores used by other processes between start() and stop(), from psutil CPU times."""

    def __init__(self) -> None:
        self.other_cores: float | None = None
        self.method = "unavailable"

    def start(self) -> CpuContention:
        try:
            import psutil
        except ImportError:
            self._psutil = None
            self._load = os.getloadavg()[0]
            return self
        self._psutil = psutil
        self._proc = psutil.Process()
        self._t0 = time.perf_counter()
        self._sys0 = psutil.cpu_times()
        self._me0 = self._proc.cpu_times()
        return self

    def stop(self) -> float | None:
        if self._psutil is None:
            self.other_cores = max(0.0, os.getloadavg()[0] - 1.0)
            self.method = "1-minute load average minus one"
            return self.other_cores
        wall = time.perf_counter() - self._t0
        sys1, me1 = self._psutil.cpu_times(), self._proc.cpu_times()
        busy = (sum(sys1) - sys1.idle - getattr(sys1, "iowait", 0.0)) - \
            (sum(self._sys0) - self._sys0.idle - getattr(self._sys0, "iowait", 0.0))
        mine = (me1.user + me1.system) - (self._me0.user + self._me0.system)
        self.other_cores = max(0.0, (busy - mine) / max(wall, 1e-9))
        self.method = "psutil system CPU time minus this process's"
        return self.other_cores
