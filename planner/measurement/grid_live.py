"""Optional hourly grid intensity for a measured run, instead of the annual average.

Two opt-in sources; without either nothing changes and no network call is ever made:

- ``--grid-hourly FILE.csv``: the user's hourly figures. A header row, then one row per hour:
  a time column (``datetime``, ``timestamp``, ``hour`` or ElectricityMaps' export
  ``Datetime (UTC)``; ISO 8601, UTC unless it carries an offset) and an intensity column
  (``g_co2e_per_kwh``, ``carbon_intensity`` or any header containing "carbon intensity"), in
  g CO2e/kWh. Each row covers the hour starting at its time. Read and checked before the
  command starts.
- ``--grid-live electricitymaps``: ElectricityMaps' v3 API (the last 24 hours, hourly, for
  ``--grid-zone`` or the --region country), with the token in ``$ELECTRICITYMAPS_TOKEN``
  (never on the command line). Called once, after the command ended.

The run's intensity is the hours' figures weighted by how much of the run each hour covers
(the run's power assumed constant over it). When the figures do not cover the whole run, or
the service cannot be reached, the annual average is used and the record says why.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from planner.errors import SpecError

TOKEN_ENV = "ELECTRICITYMAPS_TOKEN"
HISTORY_URL = "https://api.electricitymaps.com/v3/carbon-intensity/history?zone={zone}"
TIME_COLUMNS = ("datetime", "timestamp", "hour", "datetime (utc)")
VALUE_COLUMNS = ("g_co2e_per_kwh", "carbon_intensity")
HOUR_S = 3600.0


class GridUnavailable(Exception):
    """The live provider gave no usable figures (unreachable, refused, malformed)."""


@dataclass(frozen=True)
class Hourly:
    """Hourly intensities: hour starts (epoch s, sorted) and g CO2e/kWh, with their source."""

    starts: tuple[float, ...]
    values: tuple[float, ...]
    source: str


def _when(text: str) -> float:
    t = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if t.tzinfo is None:
        t = t.replace(tzinfo=timezone.utc)
    return t.timestamp()


def _column(header: list[str], names: tuple[str, ...], contains: str | None) -> int | None:
    low = [h.strip().lower() for h in header]
    for i, h in enumerate(low):
        if h in names or (contains and contains in h):
            return i
    return None


def read_csv(path: str | Path) -> Hourly:
    """The hourly figures of a CSV file; SpecError naming the file, line and value."""
    path = Path(path).expanduser()
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise SpecError(f"--grid-hourly {path}: cannot read it ({e})") from None
    if not rows:
        raise SpecError(f"--grid-hourly {path}: the file is empty")
    t_col = _column(rows[0], TIME_COLUMNS, None)
    v_col = _column(rows[0], VALUE_COLUMNS, "carbon intensity")
    if t_col is None or v_col is None:
        raise SpecError(f"--grid-hourly {path}: line 1 needs a time column ({', '.join(TIME_COLUMNS)}) "
                        f"and an intensity column ({', '.join(VALUE_COLUMNS)}); got "
                        f"{', '.join(rows[0])}")
    pairs = []
    for n, row in enumerate(rows[1:], start=2):
        if not any(c.strip() for c in row):
            continue
        try:
            t, g = _when(row[t_col]), float(row[v_col])
        except (IndexError, ValueError):
            raise SpecError(f"--grid-hourly {path}: line {n}: expected an ISO time and a "
                            f"number of g CO2e/kWh, got {row!r}") from None
        if not math.isfinite(g) or g < 0:
            raise SpecError(f"--grid-hourly {path}: line {n}: intensity must be 0 or more, "
                            f"got {row[v_col]!r}")
        pairs.append((t, g))
    if not pairs:
        raise SpecError(f"--grid-hourly {path}: no rows after the header")
    pairs.sort()
    return Hourly(tuple(t for t, _ in pairs), tuple(g for _, g in pairs), f"hourly CSV {path}")


def over_window(h: Hourly, t0: float, t1: float) -> float | None:
    """g CO2e/kWh over [t0, t1], each hour weighted by its overlap; None unless the hours
    cover the whole window (a gap, or a run outside them)."""
    t1 = max(t1, t0 + 1e-6)
    covered = weighted = 0.0
    for start, g in zip(h.starts, h.values):
        overlap = min(t1, start + HOUR_S) - max(t0, start)
        if overlap > 0:
            covered += overlap
            weighted += overlap * g
    if covered < (t1 - t0) * (1 - 1e-9):
        return None
    return weighted / covered


def fetch_electricitymaps(zone: str, token: str, opener: Callable | None = None,
                          timeout_s: float = 10.0) -> Hourly:
    """The last 24 hours for ``zone``; GridUnavailable with the reason on any failure."""
    import urllib.error
    import urllib.request

    req = urllib.request.Request(HISTORY_URL.format(zone=zone), headers={"auth-token": token})
    open_url = opener or urllib.request.urlopen
    try:
        with open_url(req, timeout=timeout_s) as resp:
            data = json.loads(resp.read().decode("utf-8"))
        history = data["history"]
        pairs = sorted((_when(p["datetime"]), float(p["carbonIntensity"])) for p in history
                       if p.get("carbonIntensity") is not None)
    except urllib.error.HTTPError as e:
        raise GridUnavailable(f"HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError) as e:
        raise GridUnavailable(f"unreachable ({getattr(e, 'reason', e)})") from None
    except (ValueError, KeyError, TypeError) as e:
        raise GridUnavailable(f"unexpected answer ({type(e).__name__}: {e})") from None
    if not pairs:
        raise GridUnavailable("no hourly figures in its answer")
    return Hourly(tuple(t for t, _ in pairs), tuple(g for _, g in pairs),
                  f"ElectricityMaps v3 history, zone {zone}")


@dataclass(frozen=True)
class LiveGrid:
    """What the user asked for: a CSV (already read) or a provider, and the zone."""

    hourly: Hourly | None
    provider: str | None  # "electricitymaps"
    zone: str | None
    token: str | None

    def intensity(self, t0: float, t1: float, opener: Callable | None = None
                  ) -> tuple[float | None, str]:
        """(g CO2e/kWh over the run, or None, and what was used or why not)."""
        try:
            h = self.hourly or fetch_electricitymaps(self.zone or "", self.token or "", opener)
        except GridUnavailable as e:
            return None, f"ElectricityMaps {e}"
        g = over_window(h, t0, t1)
        if g is None:
            return None, f"{h.source} does not cover the whole run"
        return g, f"{h.source}, weighted by the run's overlap with each hour"


def live_grid(hourly_csv: str | None, provider: str | None, zone: str | None,
              region: str | None, env) -> LiveGrid | None:
    """The opt-in source, checked before anything runs (SpecError), or None."""
    if hourly_csv and provider:
        raise SpecError("give --grid-hourly or --grid-live, not both")
    if hourly_csv:
        return LiveGrid(read_csv(hourly_csv), None, None, None)
    if not provider:
        return None
    if provider != "electricitymaps":
        raise SpecError(f"--grid-live: unknown provider '{provider}'; choose electricitymaps")
    token = env.get(TOKEN_ENV, "").strip()
    if not token:
        raise SpecError(f"--grid-live electricitymaps needs a token in ${TOKEN_ENV}")
    zone = zone or (region if region and ":" not in region else None)
    if not zone:
        raise SpecError("--grid-live electricitymaps needs --grid-zone ZONE (e.g. FR, "
                        "US-CAL-CISO) or a country --region")
    return LiveGrid(None, provider, zone, token)
