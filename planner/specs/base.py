"""Shared pydantic configuration for input specs."""

from pydantic import BaseModel, ConfigDict


class Spec(BaseModel):
    """Frozen, strict-keyed base: a typo'd key is an error, never silently ignored."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)
