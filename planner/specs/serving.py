"""ServingSettings: a scenario's `serving:` block (what `planner serve` is asked for it).

    serving:
      input_tokens: 1000
      output_tokens: 500
      tokens_per_day: 2B        # or rate_per_s: 20, or concurrency: 256
      tpot_ms: 40
      ttft_p50_ms: 1000
      precision: fp8
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveFloat, field_validator, model_validator

from planner.specs.base import PositiveWhole, Spec
from planner.units import MAX_RATE_PER_S, MAX_TOKENS_PER_DAY, parse_count

WeightPrecision = Literal["bf16", "fp16", "fp8", "int8", "int4", "fp4"]
KVPrecision = Literal["bf16", "fp16", "fp8", "int8"]


class ServingSettings(Spec):
    """Serving the scenario's model on each candidate hardware."""

    input_tokens: PositiveWhole | None = Field(
        None, description="Prompt tokens per request (default 1000, listed in the output).")
    output_tokens: PositiveWhole | None = Field(
        None, description="Generated tokens per request (default 500, listed in the output).")
    rate_per_s: float | None = Field(None, gt=0, le=MAX_RATE_PER_S,
                                     description="Load: requests per second.")
    tokens_per_day: float | None = Field(
        None, gt=0, le=MAX_TOKENS_PER_DAY, description="Load: input + output tokens per day (2B).")
    concurrency: PositiveWhole | None = Field(None, description="Load: requests in flight.")
    tpot_ms: PositiveFloat | None = Field(None, description="Target time per output token.")
    ttft_p50_ms: PositiveFloat | None = Field(None, description="Target median TTFT.")
    precision: WeightPrecision = "bf16"
    kv_precision: KVPrecision | None = None
    max_batch: PositiveWhole | None = Field(None, description="Sequences per replica cap.")

    @field_validator("tokens_per_day", mode="before")
    @classmethod
    def _count(cls, v):
        if isinstance(v, bool):
            raise ValueError(f"must be a number, not {str(v).lower()}")
        return parse_count(v, "tokens_per_day", maximum=MAX_TOKENS_PER_DAY) \
            if isinstance(v, str) else v

    @model_validator(mode="after")
    def _one_load(self) -> ServingSettings:
        if sum(x is not None for x in (self.rate_per_s, self.tokens_per_day,
                                       self.concurrency)) > 1:
            raise ValueError("give at most one of rate_per_s, tokens_per_day, concurrency")
        return self

    def load(self) -> tuple[str, float] | None:
        """The load as `planner serve` takes it, or None (size one replica)."""
        for kind, v in (("rate", self.rate_per_s), ("tokens_per_day", self.tokens_per_day),
                        ("concurrency", self.concurrency)):
            if v is not None:
                return kind, float(v)
        return None
