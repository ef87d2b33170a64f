"""Human formatting of money, energy, carbon, durations and sizes (shared by all reports)."""

from __future__ import annotations

from planner.units import GIB, fmt_count


def gib(b: float) -> str:
    return f"{b / GIB:.1f} GiB"


def money(x: float) -> str:
    return f"${fmt_count(x)}" if x >= 1e3 else f"${x:,.2f}"


def energy(kwh: float) -> str:
    if kwh >= 1e6:
        return f"{kwh / 1e6:.3g} GWh"
    if kwh >= 1e3:
        return f"{kwh / 1e3:.3g} MWh"
    return f"{kwh:.3g} kWh"


def carbon(kg: float) -> str:
    return f"{kg / 1e3:,.1f} t" if kg >= 1e3 else f"{kg:,.1f} kg"


def duration(days: float) -> str:
    if days >= 2:
        return f"{days:,.0f} days" if days >= 10 else f"{days:,.1f} days"
    hours = days * 24
    return f"{hours:.1f} hours" if hours >= 1 else f"{hours * 60:.0f} minutes"


def plural(n: int, word: str) -> str:
    return f"{n:,} {word}" + ("" if n == 1 else "s")
