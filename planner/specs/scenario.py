"""Scenario: one plan a user writes down and re-runs (scenarios/*.yaml).

model + data + training settings + candidate hardware + constraints + assumption overrides.
Validated like every other spec: unknown keys are errors naming the file, line and field.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveFloat, PositiveInt, field_validator, model_validator

from planner.specs.base import Spec
from planner.specs.model import ModelSpec
from planner.specs.training import Assumptions, Optimizer, Recompute
from planner.units import parse_count


def _count(v):
    if v is None or isinstance(v, (int, float)):
        return v
    return parse_count(v, "tokens")


class DataSpec(Spec):
    """How many tokens: a count, a tokens-per-parameter ratio, or Chinchilla-optimal (20)."""

    tokens: float | None = Field(None, description="Training tokens: 15T, 300B, 2e12.")
    tokens_per_param: PositiveFloat | None = None
    chinchilla: bool = Field(False, description="20 tokens per parameter (Hoffmann 2022).")

    _tokens = field_validator("tokens", mode="before")(_count)

    @model_validator(mode="after")
    def _one(self) -> DataSpec:
        given = [self.tokens is not None, self.tokens_per_param is not None, self.chinchilla]
        if sum(given) != 1:
            raise ValueError("give exactly one of tokens, tokens_per_param or chinchilla: true")
        if self.tokens is not None and self.tokens <= 0:
            raise ValueError(f"tokens must be positive, got {self.tokens}")
        return self


class TrainingSettings(Spec):
    """Training settings; anything left out is a planner default (listed in the output)."""

    seq_len: PositiveInt | None = None
    global_batch: PositiveInt | None = Field(None, description="Sequences per step.")
    micro_batch: PositiveInt | None = None
    precision: Literal["fp32", "tf32", "bf16", "fp16", "fp8"] | None = None
    optimizer: Optimizer | None = None
    recompute: Recompute | None = None


class Candidate(Spec):
    """One hardware option and how it is bought."""

    hardware: str
    price_tier: str | None = None
    price_usd_per_device_hour: PositiveFloat | None = None
    region: str | None = None
    devices: PositiveInt | None = Field(None, description="Fix the device count.")


class Constraints(Spec):
    """What the answer must respect; decides the sizing question asked per candidate."""

    devices: PositiveInt | None = None
    deadline_days: PositiveFloat | None = None
    budget_usd: PositiveFloat | None = None
    max_devices: PositiveInt = 65536
    objective: Literal["time", "cost", "carbon"] = "time"

    _usd = field_validator("budget_usd", mode="before")(_count)

    @model_validator(mode="after")
    def _one(self) -> Constraints:
        if sum(x is not None for x in (self.devices, self.deadline_days, self.budget_usd)) > 1:
            raise ValueError("give at most one of devices, deadline_days, budget_usd")
        return self


class Scenario(Spec):
    """A training plan to size and compare across hardware."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9.\-]*$")
    title: str
    question: str = Field(description="The question the plan answers, in words.")
    description: str | None = None
    model: str | ModelSpec = Field(description="Preset name, model file, or an inline spec.")
    data: DataSpec
    training: TrainingSettings = TrainingSettings()
    hardware: list[Candidate] = Field(min_length=1)
    constraints: Constraints = Constraints()
    assumptions: Assumptions = Assumptions()
