"""HardwareProfile: one accelerator, every figure with its source.

YAML keys carry their unit (``peak_dense_bf16_tflops``, ``hbm_bandwidth_tb_per_s``); the
properties below convert to canonical units (FLOP/s, bytes, bytes/s, W).
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, PositiveFloat, field_validator, model_validator

from planner.specs.base import Name, Spec
from planner.units import GB, GIB, MIN_FRACTION, TERA

Confidence = Literal["vendor", "measured", "secondary", "recalled", "derived", "uncertain"]
PriceTier = Literal[
    "on_demand", "reserved_1y", "reserved_3y", "spot", "capacity_block", "neocloud", "assumption"
]
from planner.vocab import PRECISIONS  # noqa: E402


class Figure(Spec):
    """A number with where it came from."""

    value: float = Field(ge=0, description="The figure, in the unit named by its key.")
    source: str = Field(min_length=3, description="URL or citation the value was read from.")
    confidence: Confidence = Field(
        description="vendor: vendor document; secondary: blog/aggregator; recalled: not "
        "re-verified; derived: arithmetic from sourced figures; uncertain: sources conflict."
    )
    note: str | None = None


class PriceQuote(Spec):
    """An indicative price per device-hour for one purchase model."""

    tier: PriceTier
    usd_per_device_hour: PositiveFloat
    provider: Name
    date: str = Field(description="When the price was seen, YYYY-MM.")
    source: str = Field(min_length=3)
    confidence: Confidence
    note: str | None = None

    @field_validator("date")
    @classmethod
    def _date(cls, v: str) -> str:
        if not re.fullmatch(r"\d{4}-\d{2}(-\d{2})?", v):
            raise ValueError(f"date must be YYYY-MM, got '{v}'")
        return v


class EfficiencyRange(Spec):
    """Fraction of dense peak achieved on executed FLOPs during training, low/expected/high."""

    low: float = Field(ge=MIN_FRACTION, le=1)
    expected: float = Field(ge=MIN_FRACTION, le=1)
    high: float = Field(ge=MIN_FRACTION, le=1)
    source: str = Field(min_length=3)

    @model_validator(mode="after")
    def _ordered(self) -> EfficiencyRange:
        if not self.low <= self.expected <= self.high:
            raise ValueError(
                f"need low <= expected <= high, got {self.low}, {self.expected}, {self.high}"
            )
        return self


class Validation(Spec):
    """What this profile's numbers were checked against (absent: datasheet figures and an
    efficiency scaled from other hardware, checked against nothing)."""

    basis: Literal["measured", "published_runs"] = Field(
        description="measured: this project ran it (docs/validation/); published_runs: "
        "published training runs on this hardware set or checked its efficiency.")
    source: str = Field(min_length=3, description="Which runs, where.")


# Figures that divide or scale everything downstream: zero would be a ZeroDivisionError or a
# silent "does not fit", so each must be > 0. tdp_w, host power and embodied carbon may be 0
# (unknown: the profile then predicts no energy for the device; see profiling/cpu_profile.py).
POSITIVE_FIGURES = (
    "peak_dense_fp32_tflops", "peak_dense_tf32_tflops", "peak_dense_bf16_tflops",
    "peak_dense_fp16_tflops", "peak_dense_fp8_tflops", "peak_dense_int8_tops",
    "peak_dense_fp4_tflops", "memory_gb",
    "memory_gib", "hbm_bandwidth_tb_per_s", "scale_up_bandwidth_gb_per_s_one_way",
    "scale_out_bandwidth_gb_per_s",
)
WHOLE_FIGURES = ("scale_up_domain_devices", "devices_per_node")  # device counts


class HardwareProfile(Spec):
    """One accelerator (per device: a GPU, a TPU chip, a Gaudi or Trainium chip)."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9.\-]*$", description="kebab-case file stem.")
    display_name: Name
    vendor: Name
    device_type: Literal["gpu", "tpu", "accelerator"]
    release_year: int = Field(ge=2010, le=2035)
    peak_dense_fp32_tflops: Figure | None = None
    peak_dense_tf32_tflops: Figure | None = None
    peak_dense_bf16_tflops: Figure | None = None
    peak_dense_fp16_tflops: Figure | None = None
    peak_dense_fp8_tflops: Figure | None = None
    peak_dense_int8_tops: Figure | None = None
    peak_dense_fp4_tflops: Figure | None = Field(
        None, description="Dense FP4 tensor peak (NVFP4/MXFP4; Blackwell and later): "
        "`planner serve --precision fp4` runs at it.")
    memory_gb: Figure | None = Field(None, description="Capacity in 1e9 bytes (vendor GB).")
    memory_gib: Figure | None = Field(None, description="Capacity in 2**30 bytes.")
    reported_memory_mib: Figure | None = Field(
        None, description="The memory the driver reports (nvidia-smi's memory.total, MiB): "
        "what a job can allocate, its CUDA context included; ECC and firmware carve-outs "
        "excluded. The capacity plans are checked against when given (memory_gib / "
        "memory_gb are the vendor's nominal figure).")
    hbm_bandwidth_tb_per_s: Figure
    scale_up_bandwidth_gb_per_s_one_way: Figure = Field(
        description="Per-device bandwidth in one direction inside the scale-up domain "
        "(NVLink, ICI, Infinity Fabric, NeuronLink; PCIe when there is none)."
    )
    scale_up_domain_devices: Figure = Field(
        description="Devices reachable over the scale-up link (8 for HGX, 72 for NVL72)."
    )
    scale_out_bandwidth_gb_per_s: Figure = Field(
        description="Per-device network bandwidth across nodes, one direction, GB/s (Gb/s / 8)."
    )
    devices_per_node: Figure
    tdp_w: Figure
    host_power_w_per_device: Figure = Field(
        description="Non-accelerator node power (CPUs, NICs, switches, fans) per device slot."
    )
    embodied_kg_co2e_per_device: Figure | None = None
    fa2_attention_fraction: Figure | None = Field(
        None, description="FlashAttention-2's training attention throughput on this device "
        "(PyTorch SDPA's flash backend) as a fraction of the fused attention kernel written "
        "for it (FlashAttention-3, cuDNN): 1 where FlashAttention-2 is that kernel (Ampere, "
        "Ada); none: no published figure (--attention-kernel fa2 is refused).")
    prices: list[PriceQuote] = Field(min_length=1)
    efficiency: EfficiencyRange
    validation: Validation | None = Field(
        None, description="What the profile was validated against; none: scaled from "
        "published figures only.")
    notes: str | None = None

    @field_validator(*POSITIVE_FIGURES)
    @classmethod
    def _positive(cls, fig: Figure | None, info) -> Figure | None:
        if fig is not None and fig.value <= 0:
            raise ValueError(f"value must be greater than 0 (got {fig.value:g})")
        return fig

    @field_validator(*WHOLE_FIGURES)
    @classmethod
    def _whole(cls, fig: Figure, info) -> Figure:
        if fig.value < 1 or not float(fig.value).is_integer():
            raise ValueError(f"value must be a whole number of devices >= 1 (got {fig.value:g})")
        return fig

    @model_validator(mode="after")
    def _check(self) -> HardwareProfile:
        if (self.memory_gb is None) == (self.memory_gib is None):
            raise ValueError("give exactly one of memory_gb or memory_gib")
        if not any(self._peak(p) for p in PRECISIONS):
            raise ValueError("at least one peak_dense_*_tflops figure is required")
        fa2 = self.fa2_attention_fraction
        if fa2 is not None and not 0 < fa2.value <= 1:
            raise ValueError(f"fa2_attention_fraction: value must be in (0, 1] (got "
                             f"{fa2.value:g})")
        return self

    def _peak(self, precision: str) -> Figure | None:
        return getattr(self, f"peak_dense_{precision}_tflops")

    # -- canonical units -------------------------------------------------------------------
    @property
    def memory_bytes(self) -> float:
        """Device memory capacity in bytes: what the driver reports where the profile has
        it (an H100 80GB reports 81,559 MiB, 79.6 GiB), else the nominal capacity."""
        if self.reported_memory_mib is not None:
            return self.reported_memory_mib.value * 2**20
        return self.nominal_memory_bytes

    @property
    def nominal_memory_bytes(self) -> float:
        """The vendor's capacity in bytes (memory_gib or memory_gb)."""
        if self.memory_gib is not None:
            return self.memory_gib.value * GIB
        assert self.memory_gb is not None
        return self.memory_gb.value * GB

    @property
    def memory_figure(self) -> Figure:
        return self.memory_gib or self.memory_gb  # type: ignore[return-value]

    @property
    def supported_precisions(self) -> list[str]:
        """Precisions with a published dense peak."""
        return [p for p in PRECISIONS if self._peak(p)]

    def peak_flops_per_s(self, precision: str) -> float | None:
        """Dense peak FLOP/s for a precision, or None when the device has no such path."""
        fig = self._peak(precision)
        return fig.value * TERA if fig else None

    def peak_figure(self, precision: str) -> Figure | None:
        return self._peak(precision)

    def price(self, tier: str) -> PriceQuote | None:
        """The first listed quote for a tier (the profile's default for it), or None."""
        return next((q for q in self.prices if q.tier == tier), None)

    @property
    def price_tiers(self) -> list[str]:
        return sorted({q.tier for q in self.prices})
