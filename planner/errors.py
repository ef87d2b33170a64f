"""Errors a user can cause. The CLI turns each into one line on stderr and exit code 1.

Internal invariants use ``assert``; anything a user can get wrong raises a ``PlannerError``.
"""

from __future__ import annotations

from collections.abc import Iterable


_LIST_CMD = {"model": "models", "hardware": "hardware", "region": "regions"}


class PlannerError(Exception):
    """Base class: a problem with the user's input or data, shown as one line."""


def nearest(name: str, valid: list[str], n: int = 3) -> list[str]:
    """Up to n valid names closest to ``name``: names it prefixes first, then by similarity."""
    low = name.lower()
    by_lower = {v.lower(): v for v in valid}
    picks = [v for v in valid if v.lower().startswith(low) or low.startswith(v.lower())]
    picks = sorted(picks, key=len)[:n]
    import difflib  # only on a mistake: not on every start-up

    for c in difflib.get_close_matches(low, list(by_lower), n=n, cutoff=0.5):
        if by_lower[c] not in picks and len(picks) < n:
            picks.append(by_lower[c])
    return picks


class UnknownNameError(PlannerError, KeyError):
    """A preset, hardware profile, region or other name that does not exist."""

    def __init__(self, kind: str, name: str, valid: Iterable[str]):
        valid = sorted(valid)
        hint = ", ".join(nearest(name, valid))
        msg = f"unknown {kind} '{name}'"
        if hint:
            msg += f"; did you mean: {hint}?"
        elif len(valid) <= 40:
            msg += f"; valid: {', '.join(valid)}"
        else:
            msg += f" ({len(valid)} known; see `planner {_LIST_CMD.get(kind, kind)} list`)"
        self.kind, self.name, self.suggestions = kind, name, hint
        super().__init__(msg)

    def __str__(self) -> str:  # KeyError would quote the message
        return self.args[0]


class SpecError(PlannerError, ValueError):
    """An invalid model, hardware, training or layout specification."""


class InfeasibleError(PlannerError):
    """A plan that cannot run, e.g. it does not fit in device memory."""
