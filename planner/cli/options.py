"""Options shared by several commands, and parameter types with clear messages.

Every flag is checked when it is parsed, so a bad value is reported against the flag as the
user wrote it (``error: Invalid value for '--pue': ...``): floats must be finite, integers
at most MAX_INT, counts positive, and text flags non-empty. ``harden`` applies the same
rules to every command's options (PlannerGroup calls it when it loads a command).
"""

from __future__ import annotations

import math

import click

from planner.report import FORMATS
from planner.units import (  # not specs: pydantic is slow to load
    MAX_COUNT, MAX_INT, MIN_FRACTION, parse_count,
)


def _flag(param) -> str:
    return param.opts[0] if param is not None and getattr(param, "opts", None) else "value"


class CountType(click.ParamType):
    """A positive quantity with an optional K/M/B/T suffix: 15T, 300B, 2e12."""

    name = "count"

    def __init__(self, minimum: float = 0.0, unit: str = "", maximum: float = MAX_COUNT):
        self.minimum, self.unit, self.maximum = minimum, unit, maximum

    def convert(self, value, param, ctx):
        try:
            return parse_count(value, what=_flag(param), minimum=self.minimum, unit=self.unit,
                               maximum=self.maximum)
        except ValueError as e:
            self.fail(str(e).removeprefix(f"{_flag(param)}: "), param, ctx)


class FiniteFloat(click.FloatRange):
    """A FloatRange that also rejects nan and inf (which pass its comparisons)."""

    def convert(self, value, param, ctx):
        rv = click.FLOAT.convert(value, param, ctx)
        if not math.isfinite(rv):
            valid = "" if self.min is None and self.max is None else \
                f" in the range {self._describe_range()}"
            self.fail(f"{value!r} is not a finite number; give a number{valid}", param, ctx)
        return super().convert(rv, param, ctx)


class BoundedInt(click.IntRange):
    """An IntRange with an upper bound of MAX_INT when none is given."""

    def __init__(self, min=None, max=None, min_open=False, max_open=False, clamp=False):
        super().__init__(min, MAX_INT if max is None else max, min_open, max_open, clamp)


class Text(click.ParamType):
    """Text that must not be empty: ``--hardware ''`` is an error, never the default."""

    name = "text"

    def __init__(self, inner: click.ParamType = click.STRING):
        self.inner = inner
        self.name = inner.name

    def convert(self, value, param, ctx):
        if isinstance(value, str) and not value.strip():
            self.fail("must not be empty; leave the option out to use the default", param, ctx)
        return self.inner.convert(value, param, ctx)

    def get_metavar(self, *args, **kwargs):
        return self.inner.get_metavar(*args, **kwargs)

    def shell_complete(self, ctx, param, incomplete):
        return self.inner.shell_complete(ctx, param, incomplete)

    def to_info_dict(self):
        return self.inner.to_info_dict()


class RangeType(click.ParamType):
    """A fraction, or low:expected:high, each from MIN_FRACTION to 1."""

    name = "range"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        try:
            parts = [float(x) for x in str(value).split(":")]
        except ValueError:
            self.fail(f"'{value}' is not a number or low:expected:high", param, ctx)
        if len(parts) == 1:
            parts = parts * 3
        if len(parts) != 3 or not all(MIN_FRACTION <= x <= 1 for x in parts):
            self.fail(f"'{value}': give one fraction in the range {MIN_FRACTION:g}<=x<=1, or "
                      "low:expected:high", param, ctx)
        if not parts[0] <= parts[1] <= parts[2]:
            self.fail(f"'{value}': need low <= expected <= high", param, ctx)
        return tuple(parts)


COUNT = CountType()
TOKENS = CountType(minimum=1, unit="token")
RANGE = RangeType()
TEXT = Text()


def harden(command: click.Command) -> click.Command:
    """Apply the parse-time rules to every option of a command (and of its subcommands).

    FloatRange/float -> FiniteFloat; IntRange/int without an upper bound -> at most MAX_INT;
    text and path options -> non-empty; a --tokens count -> at least one token. Idempotent.
    """
    if getattr(command, "_planner_hardened", False):
        return command
    for sub in getattr(command, "commands", {}).values():
        harden(sub)
    for p in command.params:
        if not isinstance(p, click.Option) or p.is_flag or p.nargs != 1:
            continue
        t = p.type
        if isinstance(t, FiniteFloat) or isinstance(t, Text):
            continue
        if isinstance(t, click.FloatRange):
            p.type = FiniteFloat(t.min, t.max, t.min_open, t.max_open, t.clamp)
        elif t is click.FLOAT:
            p.type = FiniteFloat()
        elif isinstance(t, click.IntRange):
            if t.max is None:
                p.type = BoundedInt(t.min, None, t.min_open, False, t.clamp)
        elif t is click.INT:
            p.type = BoundedInt()
        elif t is click.STRING or isinstance(t, click.Path):
            p.type = Text(t)
        elif isinstance(t, CountType) and p.name == "tokens" and t.minimum < 1:
            p.type = TOKENS
    command._planner_hardened = True  # type: ignore[attr-defined]
    return command


format_option = click.option(
    "--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True,
    help="table for people, json for scripts, markdown for docs, csv for spreadsheets.")

profiles_option = click.option(
    "--profiles-dir", "profiles_dirs", multiple=True, type=Text(click.Path(file_okay=False)),
    help="Extra directory of hardware profile YAML files (also $PLANNER_PROFILES_DIR).")

__all__ = ["COUNT", "MAX_COUNT", "RANGE", "TEXT", "TOKENS", "BoundedInt", "CountType",
           "FiniteFloat", "RangeType", "Text", "format_option", "harden", "profiles_option"]
