"""Errors a user can cause. The CLI turns each into one line on stderr and exit code 1.

Internal invariants use ``assert``; anything a user can get wrong raises a ``PlannerError``.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


_LIST_CMD = {"model": "models", "hardware": "hardware", "region": "regions"}


class PlannerError(Exception):
    """Base class: a problem with the user's input or data, shown as one line."""


class UnknownNameError(PlannerError, KeyError):
    """A preset, hardware profile, region or other name that does not exist."""

    def __init__(self, kind: str, name: str, valid: Iterable[str]):
        valid = sorted(valid)
        close = difflib.get_close_matches(name.lower(), [v.lower() for v in valid], n=3, cutoff=0.5)
        by_lower = {v.lower(): v for v in valid}
        hint = ", ".join(by_lower[c] for c in close)
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
