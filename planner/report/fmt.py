"""Human formatting of money, energy, carbon, durations and sizes (shared by all reports)."""

from __future__ import annotations

from planner.units import GIB, fmt_count


def gib(b: float) -> str:
    return f"{b / GIB:.1f} GiB"


def money(x: float) -> str:
    return f"${fmt_count(x)}" if x >= 1e3 else f"${x:,.2f}"


def energy(kwh: float | None) -> str:
    """'12.3 GWh', '4.27 MWh', '3.1 kWh', '0.00427 Wh'; 'n/a' for None."""
    if kwh is None:
        return "n/a"
    if abs(kwh) >= 1e6:
        return f"{kwh / 1e6:.3g} GWh"
    if abs(kwh) >= 1e3:
        return f"{kwh / 1e3:.3g} MWh"
    if abs(kwh) >= 1 or kwh == 0:
        return f"{kwh:.3g} kWh"
    return f"{kwh * 1e3:.3g} Wh"


def carbon(kg: float | None) -> str:
    """'1,234.5 t', '3.4 kg', '0.239 g'; 'n/a' for None."""
    if kg is None:
        return "n/a"
    if abs(kg) >= 1e3:
        return f"{kg / 1e3:,.1f} t"
    if abs(kg) >= 1 or kg == 0:
        return f"{kg:,.1f} kg"
    return f"{kg * 1e3:.3g} g"


def duration(days: float) -> str:
    if days >= 2:
        return f"{days:,.0f} days" if days >= 10 else f"{days:,.1f} days"
    hours = days * 24
    return f"{hours:.1f} hours" if hours >= 1 else f"{hours * 60:.0f} minutes"


def plural(n: int, word: str) -> str:
    return f"{n:,} {word}" + ("" if n == 1 else "s")

