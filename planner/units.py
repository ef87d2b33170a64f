"""Units and quantity parsing.

Internal canonical units: bytes, FLOPs, seconds, watts, kWh, kg CO2e, USD.
Capacity uses GiB (2**30 bytes) when printed; bandwidth uses decimal GB/s (1e9 bytes/s);
peak compute uses TFLOP/s (1e12 FLOP/s). One multiply-accumulate is 2 FLOPs.
"""

from __future__ import annotations

import math
import re

KIB = 2**10
MIB = 2**20
GIB = 2**30
GB = 10**9
TB = 10**12
TERA = 1e12
SECONDS_PER_HOUR = 3600.0
HOURS_PER_DAY = 24.0
HOURS_PER_YEAR = 24.0 * 365.0

_SUFFIX = {"": 1.0, "K": 1e3, "M": 1e6, "B": 1e9, "G": 1e9, "T": 1e12, "P": 1e15}
_COUNT_RE = re.compile(r"^\s*([+-]?[0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([KMBGTP]?)\s*$", re.I)


MAX_INT = 10**9  # the largest shape, count or degree any spec accepts (specs/base.py)
MAX_COUNT = 1e30  # larger than any token, FLOP, dollar or device-hour count planner is asked
# Bounds that keep every result finite and readable (1e-300 as an efficiency would print
# 300-digit day counts; a 1e18 requests/s load a fleet past float precision, TTFT inf):
MIN_FRACTION = 1e-3  # the least efficiency or goodput a plan takes (0.1%)
STORAGE_GB_PER_S = (1e-3, 10**6)  # aggregate checkpoint bandwidth: 1 MB/s to 1 PB/s
MAX_EPOCHS = 10_000  # passes over a dataset
MAX_RATE_PER_S = 1e9  # a serving load's requests per second
MAX_TOKENS_PER_DAY = 1e18  # a serving load's input + output tokens per day
MAX_GRID_G_CO2E_PER_KWH = 2000  # above any grid: lignite plants emit ~1,100-1,200 g CO2e/kWh


def parse_count(text: str | int | float, what: str = "count", minimum: float = 0.0,
                unit: str = "", maximum: float = MAX_COUNT) -> float:
    """Parse '15T', '300B', '2e12', '1.5M' or a number into a plain float.

    Suffixes are decimal: K=1e3, M=1e6, B/G=1e9, T=1e12, P=1e15.
    Raises ValueError naming ``what`` when the text is not a finite quantity above 0, at
    least ``minimum`` (when given; e.g. 1 for tokens) and at most ``maximum`` (MAX_COUNT).
    """
    if isinstance(text, bool):
        raise ValueError(f"{what}: must be a number, not {str(text).lower()}")
    if isinstance(text, (int, float)):
        try:
            value = float(text)
        except OverflowError:
            value = math.inf
    else:
        m = _COUNT_RE.match(str(text).replace("_", "").replace(",", ""))
        if not m:
            raise ValueError(
                f"{what}: cannot read '{text}'; use a number with an optional suffix "
                "K, M, B, T (e.g. 15T, 300B, 2e12)"
            )
        value = float(m.group(1)) * _SUFFIX[m.group(2).upper()]
    if not math.isfinite(value) or value <= 0 or value > maximum:
        raise ValueError(f"{what}: must be a positive number of at most {maximum:g}, "
                         f"got '{text}'")
    if value < minimum:
        raise ValueError(f"{what}: must be at least {minimum:g}{' ' + unit if unit else ''}, "
                         f"got '{text}'")
    return value


def fmt_count(x: float) -> str:
    """Human-readable count: 1.23T, 70.6B, 512M, 8.2K."""
    for div, suf in ((1e15, "P"), (1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if abs(x) >= div:
            return f"{x / div:.3g}{suf}"
    return f"{x:.3g}"


def fmt_bytes(n: float) -> str:
    """Binary units: '74.5 GiB'."""
    for div, suf in ((2**40, "TiB"), (GIB, "GiB"), (MIB, "MiB"), (KIB, "KiB")):
        if abs(n) >= div:
            return f"{n / div:.1f} {suf}"
    return f"{n:.0f} B"


def fmt_sci(x: float) -> str:
    """Scientific notation with 3 significant digits: 8.69e+23."""
    return f"{x:.3g}" if 1e-3 <= abs(x) < 1e6 or x == 0 else f"{x:.3e}"
