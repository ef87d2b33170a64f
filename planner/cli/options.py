"""Options shared by several commands, and parameter types with clear messages."""

from __future__ import annotations

import click

from planner.report import FORMATS
from planner.units import parse_count


class CountType(click.ParamType):
    """A positive quantity with an optional K/M/B/T suffix: 15T, 300B, 2e12."""

    name = "count"

    def convert(self, value, param, ctx):
        if isinstance(value, (int, float)):
            return float(value)
        try:
            return parse_count(value, what=f"--{param.name.replace('_', '-')}" if param else "")
        except ValueError as e:
            self.fail(str(e), param, ctx)


class RangeType(click.ParamType):
    """A fraction, or low:expected:high, each in (0, 1]."""

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
        if len(parts) != 3 or not all(0 < x <= 1 for x in parts):
            self.fail(f"'{value}': give one fraction in (0, 1] or low:expected:high", param, ctx)
        if not parts[0] <= parts[1] <= parts[2]:
            self.fail(f"'{value}': need low <= expected <= high", param, ctx)
        return tuple(parts)


COUNT = CountType()
RANGE = RangeType()

format_option = click.option(
    "--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True,
    help="table for people, json for scripts, markdown for docs, csv for spreadsheets.")

profiles_option = click.option(
    "--profiles-dir", "profiles_dirs", multiple=True, type=click.Path(file_okay=False),
    help="Extra directory of hardware profile YAML files (also $PLANNER_PROFILES_DIR).")
