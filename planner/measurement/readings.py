"""What a host meter reports, shared by every meter (energy.py, codecarbon_meter.py, record.py).

A module of its own so that no meter imports another: energy.py chooses a meter and imports
codecarbon_meter.py lazily, and codecarbon_meter.py needs only these types, so the two never
import each other and codecarbon stays out of the import path of commands that do not meter.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from planner.measurement.results import Component

J_PER_KWH = 3.6e6


@dataclass(frozen=True)
class HostReading:
    """What a host meter saw: CPU and RAM, and its own GPU figure (None: it does not do GPUs)."""

    cpu: Component
    ram: Component
    gpu: Component | None
    gpu_count: int  # GPUs the meter itself found (0 when it does not look)
    codecarbon_kg_co2e: float | None
    meter: str  # e.g. "codecarbon 3.3.2"
    cpu_share: float | None = None  # the command's share of the machine's busy CPU time


class HostMeter(Protocol):
    """Brackets the measured work; ``stop`` takes the work's wall-clock duration in s."""

    name: str

    def start(self) -> None: ...

    def stop(self, duration_s: float) -> HostReading: ...


def power_w(kwh: float | None, duration_s: float) -> float | None:
    """Average power in W of ``kwh`` spread over ``duration_s``."""
    if kwh is None or duration_s <= 0:
        return None
    return kwh * J_PER_KWH / duration_s
