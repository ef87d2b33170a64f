"""Shared pydantic configuration for input specs, and the strict number types they use."""

from __future__ import annotations

import numbers
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from planner.units import MAX_INT  # the largest shape, count or degree any spec accepts


class Spec(BaseModel):
    """Frozen, strict-keyed base: a typo'd key is an error, never silently ignored.

    Floats must be finite: ``.inf`` or ``.nan`` in a file is an error naming the field."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True,
                              allow_inf_nan=False)


def _whole(v):
    """A whole number, not a YAML boolean (``true`` is not 1) and not text."""
    if type(v) is int:  # the common case, first: specs are built on every estimate
        return v
    if isinstance(v, bool):
        raise ValueError(f"must be a whole number, not {str(v).lower()}")
    if isinstance(v, numbers.Integral):
        return int(v)
    if isinstance(v, float):
        if v != v or v in (float("inf"), float("-inf")) or not v.is_integer():
            raise ValueError(f"must be a whole number (got {v!r})")
        if abs(v) > MAX_INT:
            raise ValueError(f"must be at most {MAX_INT:,} (got {v:g})")
        return int(v)
    raise ValueError(f"must be a whole number (got {type(v).__name__} {v!r})")


def _non_blank(v):
    if isinstance(v, str) and not v.strip():
        raise ValueError("must not be empty")
    return v


# (constraints before the validator, so the JSON Schema says minimum/maximum)
Whole = Annotated[int, Field(ge=0, le=MAX_INT), BeforeValidator(_whole)]
PositiveWhole = Annotated[int, Field(ge=1, le=MAX_INT), BeforeValidator(_whole)]
Name = Annotated[str, BeforeValidator(_non_blank)]
