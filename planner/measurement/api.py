"""``planner.measure(...)``: measure the energy, carbon and cost of a block of Python code.

    import planner
    with planner.measure(label="ablation 3", region="FR") as m:
        train()
    m.result.energy.kwh, m.result.carbon.kg_co2e, m.result.to_dict()

The block is measured like a command under ``planner measure`` (same meters, labels, ledger).
An exception or Ctrl-C inside the block is recorded (``complete`` false, ``error`` set) and
then propagates.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from planner.errors import SpecError
from planner.measurement.context import MeasureOptions
from planner.measurement.gpu import GpuBackend
from planner.measurement.ledger import ledger_path
from planner.measurement.results import RunRecord
from planner.measurement.session import Session
from planner.units import parse_count


def _count(text: str, key: str) -> float:
    try:
        return parse_count(text, key)
    except ValueError as e:
        raise SpecError(str(e)) from None


@dataclass
class Measurement:
    """The handle ``planner.measure()`` yields; ``result`` is set when the block ends."""

    options: MeasureOptions
    result: RunRecord | None = None


@contextmanager
def measure(label: str | None = None, region: str | None = None, *,
            ledger: str | os.PathLike | bool | None = None,
            gpu_backend: GpuBackend | None = None, **options: Any) -> Iterator[Measurement]:
    """Measure the ``with`` block; ``Measurement.result`` is a ``RunRecord``.

    ``ledger``: a path, None for the default ($PLANNER_LEDGER or the per-user file), or False
    to record nothing. ``options`` are ``MeasureOptions`` fields: hardware, price_tier,
    price_per_hour, devices, pue, grid_g_co2e_per_kwh, tokens, steps, extrapolate_to (numbers
    or "50M", "2T"), model, interval_s (s), meter ("auto", "codecarbon", "cpu-time"),
    profiles_dirs.
    """
    for key in ("tokens", "steps", "extrapolate_to"):
        if isinstance(options.get(key), str):  # "50M", "2T" as on the command line
            options[key] = _count(options[key], key)
    opts = MeasureOptions(label=label, region=region, **options)
    path: Path | None = None if ledger is False else ledger_path(
        None if ledger in (None, True) else ledger)
    session = Session(opts, path, gpu_backend)
    handle = Measurement(opts)
    where = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "python"
    session.start()
    error: str | None = None
    interrupted: str | None = None
    try:
        yield handle
    except BaseException as e:
        error = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
        interrupted = "SIGINT" if isinstance(e, KeyboardInterrupt) else None
        raise
    finally:
        handle.result = session.build((), f"python block in {where}", None,
                                      interrupted_by=interrupted, error=error)
        # A ledger that cannot take the record: it goes to planner-run-ID.json and the
        # LedgerError says where (m.result holds it too).
        session.save(handle.result)
