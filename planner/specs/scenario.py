"""Scenario: one plan a user writes down and re-runs (scenarios/*.yaml).

model + data + training settings + candidate hardware + constraints + assumption overrides.
Validated like every other spec: unknown keys are errors naming the file, line and field.
"""

from __future__ import annotations


from typing import Literal

from pydantic import Field, PositiveFloat, field_validator, model_validator

from planner.specs.base import Name, PositiveWhole, Spec
from planner.specs.finetune import FinetuneSpec
from planner.specs.model import ModelSpec
from planner.specs.serving import ServingSettings
from planner.specs.training import Assumptions
from planner.vocab import AttentionKernel, GradDtype, Kernels, Objective, Optimizer, Precision, Recompute
from planner.units import MAX_COUNT, MAX_EPOCHS, parse_count


def _count(v, info=None):
    if isinstance(v, bool):
        raise ValueError(f"must be a number, not {str(v).lower()}")
    if v is None or isinstance(v, float):
        return v
    return parse_count(v, info.field_name if info else "count")


class DataSpec(Spec):
    """How many tokens: a count, a tokens-per-parameter ratio, Chinchilla-optimal (20), or a
    dataset of samples (x seq_len); times epochs."""

    tokens: float | None = Field(None, description="Training tokens: 15T, 300B, 2e12.")
    tokens_per_param: PositiveFloat | None = None
    chinchilla: bool = Field(False, description="20 tokens per parameter (Hoffmann 2022).")
    samples: float | None = Field(None, description="Dataset size in sequences (counted as "
                                  "samples x training.seq_len; planner estimate --samples).")
    epochs: float | None = Field(None, gt=0, le=MAX_EPOCHS,
                                 description="Passes over the data (--epochs).")
    packing: Literal["on", "off"] | None = Field(
        None, description="on (default): samples packed into full rows; off: each sample "
        "padded to training.seq_len (--packing).")
    avg_sample_tokens: PositiveWhole | None = Field(
        None, description="Mean tokens per sample (--avg-sample-tokens).")

    _tokens = field_validator("tokens", "samples", mode="before")(_count)

    @field_validator("packing", mode="before")
    @classmethod
    def _on_off(cls, v):
        return {True: "on", False: "off"}.get(v, v) if isinstance(v, bool) else v  # YAML 1.1

    @model_validator(mode="after")
    def _one(self) -> DataSpec:
        given = [self.tokens is not None, self.tokens_per_param is not None, self.chinchilla,
                 self.samples is not None]
        if sum(given) != 1:
            raise ValueError("give exactly one of tokens, tokens_per_param, chinchilla: true "
                             "or samples")
        if self.samples is not None and self.samples < 1:
            raise ValueError(f"samples must be at least 1 (got {self.samples:g})")
        if self.packing == "off" and self.tokens is not None and self.avg_sample_tokens is None:
            raise ValueError("packing: off with tokens needs avg_sample_tokens (the mean sample "
                             "length, to count the samples padded to training.seq_len)")
        if self.tokens is not None and self.tokens < 1:
            raise ValueError(f"tokens must be at least 1 (got {self.tokens:g})")
        if self.tokens is not None and self.epochs is not None and \
                self.tokens * self.epochs > MAX_COUNT:
            raise ValueError(f"tokens x epochs is {self.tokens:.3g} x {self.epochs:g} = "
                             f"{self.tokens * self.epochs:.3g} tokens, more than the "
                             f"{MAX_COUNT:g} a plan takes; give fewer epochs")
        return self


class TrainingSettings(Spec):
    """Training settings; anything left out is a planner default (listed in the output)."""

    seq_len: PositiveWhole | None = None
    global_batch: PositiveWhole | None = Field(None, description="Sequences per step.")
    micro_batch: PositiveWhole | None = None
    precision: Precision | None = None
    optimizer: Optimizer | None = None
    recompute: Recompute | None = None
    kernels: Kernels | None = Field(None, description="fused (default) or eager elementwise "
                                    "kernels (eager: plain PyTorch, the fine-tuning default).")
    flash_attention: bool | None = None
    attention_flops: Literal["full", "causal"] | None = None
    dropout: bool | None = None
    attention_kernel: AttentionKernel | None = Field(
        None, description="native (default: the kernel written for the device) or fa2 "
        "(FlashAttention-2).")
    grad_dtype: GradDtype | None = Field(None, description="Dtype gradients accumulate and "
                                         "reduce in: fp32 or the compute dtype (default: the "
                                         "framework's convention).")


class Candidate(Spec):
    """One hardware option and how it is bought."""

    hardware: Name
    price_tier: Name | None = None
    price_usd_per_device_hour: PositiveFloat | None = None
    region: Name | None = None
    devices: PositiveWhole | None = Field(None, description="Fix the device count.")


class Constraints(Spec):
    """What the answer must respect; decides the sizing question asked per candidate."""

    devices: PositiveWhole | None = None
    deadline_days: PositiveFloat | None = None
    budget_usd: PositiveFloat | None = None
    max_devices: PositiveWhole = 65536
    objective: Objective = "time"

    _usd = field_validator("budget_usd", mode="before")(_count)

    @model_validator(mode="after")
    def _one(self) -> Constraints:
        if sum(x is not None for x in (self.devices, self.deadline_days, self.budget_usd)) > 1:
            raise ValueError("give at most one of devices, deadline_days, budget_usd")
        return self


class Scenario(Spec):
    """A training plan to size and compare across hardware."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9.\-]*$")
    title: Name
    question: Name = Field(description="The question the plan answers, in words.")
    description: str | None = None
    model: str | ModelSpec = Field(description="Preset name, model file, or an inline spec.")
    data: DataSpec
    training: TrainingSettings = TrainingSettings()
    hardware: list[Candidate] = Field(min_length=1)
    constraints: Constraints = Constraints()
    assumptions: Assumptions = Assumptions()
    finetune: FinetuneSpec | None = Field(
        None, description="Fine-tune instead of pre-train: mode full|partial|lora|qlora and "
        "its recipe (lora_rank, lora_targets, ...), as `planner estimate --finetune`.")
    serving: ServingSettings | None = Field(
        None, description="Also size serving the model on each candidate (planner serve).")
