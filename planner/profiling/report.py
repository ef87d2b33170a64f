"""Validation results: predicted vs measured, with the error and a verdict."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Quantity:
    """One checked quantity. ``predicted`` or ``measured`` may be None (then no verdict)."""

    name: str
    predicted: float | None
    measured: float | None
    unit: str
    method: str  # how the measured value was obtained (and whether it is an estimate)
    tolerance_pct: float | None = None  # the verdict's threshold

    @property
    def error_pct(self) -> float | None:
        if self.predicted is None or self.measured is None or self.measured == 0:
            return None
        return (self.predicted - self.measured) / self.measured * 100

    @property
    def verdict(self) -> str:
        err = self.error_pct
        if err is None or self.tolerance_pct is None:
            return "n/a"
        return "ok" if abs(err) <= self.tolerance_pct else "off"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "predicted": self.predicted, "measured": self.measured,
                "error_pct": self.error_pct, "unit": self.unit, "method": self.method,
                "tolerance_pct": self.tolerance_pct, "verdict": self.verdict}


@dataclass
class ValidationReport:
    device: str
    device_name: str
    torch_version: str
    dtype: str
    model: dict[str, Any]  # the shape used
    steps: int
    warmup: int
    micro_batch_size: int
    seq_len: int
    compiled: bool = False
    optimizer: str = ""
    quantities: list[Quantity] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)
    interrupted: bool = False
    calibration: dict[str, Any] | None = None

    def get(self, name: str) -> Quantity | None:
        return next((q for q in self.quantities if q.name == name), None)

    def worst_error_pct(self) -> float:
        errs = [abs(q.error_pct) for q in self.quantities if q.error_pct is not None]
        return max(errs) if errs else 0.0

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["quantities"] = [q.to_dict() for q in self.quantities]
        return d
