"""Arithmetic that works the same on Python numbers and numpy arrays.

The memory and step-time models are written once, with these helpers instead of branches, so
`planner estimate` evaluates one layout with plain floats (no numpy import at start-up) and
`planner plan` evaluates a million layouts at once with arrays.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

RECOMPUTE_CODES = {"none": 0, "selective": 1, "full": 2}
SCHEDULE_CODES = {"1f1b": 0, "interleaved": 1, "gpipe": 2}


def vmax(a: Any, b: Any) -> Any:
    """Elementwise max of numbers or arrays."""
    return a + (b - a) * (b > a)


def vmin(a: Any, b: Any) -> Any:
    """Elementwise min of numbers or arrays."""
    return a + (b - a) * (b < a)


@dataclass(frozen=True)
class Degrees:
    """One layout (numbers) or many (equal-length arrays): the degrees that a search varies."""

    devices: Any
    tp: Any
    pp: Any
    cp: Any
    ep: Any
    dp: Any
    zero: Any  # ZeRO stage 0-3
    mb: Any  # micro-batch size, sequences
    recompute: Any  # 0 none, 1 selective, 2 full
    sp: Any  # 1 when sequence parallelism is on
    schedule: Any  # 0 1f1b, 1 interleaved, 2 gpipe
    v: Any  # virtual stages per pipeline rank
    global_batch: Any  # sequences per optimizer step

    @property
    def micro_batches(self) -> Any:
        """Micro-batches per pipeline per step: B / (dp x mb)."""
        return self.global_batch / (self.dp * self.mb)

    @classmethod
    def from_specs(cls, training, par) -> Degrees:
        return cls(
            devices=par.devices, tp=par.tp, pp=par.pp, cp=par.cp, ep=par.ep, dp=par.dp,
            zero=par.zero_stage, mb=training.micro_batch_size,
            recompute=RECOMPUTE_CODES[training.recompute], sp=int(par.sp),
            schedule=SCHEDULE_CODES[par.pipeline_schedule], v=par.virtual_stages,
            global_batch=training.global_batch_size,
        )
