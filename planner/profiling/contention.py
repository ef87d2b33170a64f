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
        self._me0 = self._own_seconds()
        return self

    def _own_seconds(self) -> float:
        """CPU seconds of this process and its children, live (torch.compile's workers,
        DataLoader workers) or exited: their work is ours, not contention."""
        t = self._proc.cpu_times()
        total = t.user + t.system + t.children_user + t.children_system
        for child in self._proc.children(recursive=True):
            try:
                c = child.cpu_times()  # + grandchildren it has reaped
                total += c.user + c.system + c.children_user + c.children_system
            except self._psutil.Error:  # exited between listing and reading
                pass
        return total

    def stop(self) -> float | None:
        if self._psutil is None:
            self.other_cores = max(0.0, os.getloadavg()[0] - 1.0)
            self.method = "1-minute load average minus one"
            return self.other_cores
        wall = time.perf_counter() - self._t0
        sys1, me1 = self._psutil.cpu_times(), self._own_seconds()
        busy = (sum(sys1) - sys1.idle - getattr(sys1, "iowait", 0.0)) - \
            (sum(self._sys0) - self._sys0.idle - getattr(self._sys0, "iowait", 0.0))
        self.other_cores = max(0.0, (busy - (me1 - self._me0)) / max(wall, 1e-9))
        self.method = "psutil system CPU time minus this process's and its children's"
        return self.other_cores
