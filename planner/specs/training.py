"""Training and layout inputs: what is trained (tokens, batch, precision) and how it is laid out."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from planner.specs.base import Name, PositiveWhole, Spec
from planner.specs.finetune import FinetuneSpec
from planner.specs.hardware import EfficiencyRange
from planner.units import MAX_GRID_G_CO2E_PER_KWH, MIN_FRACTION, STORAGE_GB_PER_S
from planner.vocab import (
    AttentionKernel, Framework, GradDtype, Kernels, Offload, Optimizer, Precision, Recompute, Schedule, ZeroStage,
)


class TrainingSpec(Spec):
    """What one training run does, independent of hardware and layout."""

    tokens: float = Field(ge=1, description="Training tokens D (at least one).")
    seq_len: PositiveWhole = Field(description="Sequence length s, tokens.")
    global_batch_size: PositiveWhole = Field(description="Sequences per optimizer step (B).")
    micro_batch_size: PositiveWhole = Field(1, description="Sequences per micro-batch (b).")
    precision: Precision = Field("bf16", description="Dtype of the matmuls (selects the peak).")
    optimizer: Optimizer = Field("adamw", description="Optimizer and state-precision recipe.")
    recompute: Recompute = Field("selective", description="Activation recomputation policy.")
    flash_attention: bool = Field(True, description="Fused attention: no s^2 score matrix stored.")
    attention_flops: Literal["full", "causal"] = Field(
        "full", description="full: PaLM/Megatron convention (pairs with published MFU); "
        "causal: half the score FLOPs (physically required)."
    )
    kernels: Kernels = Field(
        "fused", description="fused: norms, activations, RoPE and the loss in fused kernels "
        "(Megatron-LM, Transformer Engine, Liger, torch.compile); eager: one PyTorch kernel "
        "per op, each reading and writing HBM (plain Hugging Face / FSDP scripts)."
    )
    dropout: bool = Field(
        False, description="Dropout after attention and MLP (and on the attention scores "
        "without fused attention): its masks are saved for backward (Korthikanti et al. 2022 "
        "Table 2). Modern LLM pre-training uses none."
    )
    attention_kernel: AttentionKernel = Field(
        "native", description="The fused attention kernel: native, the one written for the "
        "device (FlashAttention-2 on Ampere/Ada; FlashAttention-3, cuDNN, Transformer Engine "
        "on Hopper), or fa2, FlashAttention-2 wherever it runs (PyTorch SDPA's flash backend "
        "on 2024 H100 stacks), at the profile's fa2_attention_fraction of native."
    )
    grad_dtype: GradDtype | None = Field(
        None, description="Dtype gradients accumulate and reduce in: fp32 (Megatron "
        "--accumulate-allreduce-grads-in-fp32, DeepSpeed grad_accum_dtype, FSDP2 "
        "reduce_dtype) or the 16-bit compute dtype. None: the framework's convention "
        "(megatron: fp32 with bf16, fp16 with fp16; fsdp2: fp32; generic, deepspeed: the "
        "optimizer recipe's)."
    )
    finetune: FinetuneSpec | None = Field(
        None, description="Fine-tuning recipe (full, partial, lora, qlora); None = training "
        "every weight from scratch, as full fine-tuning does.")

    @model_validator(mode="after")
    def _check_attention_kernel(self) -> TrainingSpec:
        # which gradient dtypes a recipe can take is checked where the framework is known
        # (planning/resolve.py: model_state.grad_dtype_error)
        why = attention_kernel_error(self.attention_kernel, self.flash_attention)
        if why:
            raise ValueError(why)
        return self


def attention_kernel_error(kernel: str | None, flash_attention: bool | None) -> str | None:
    """Why a fused attention kernel cannot be named with unfused attention (None: it can)."""
    if kernel in (None, "native") or flash_attention is not False:
        return None
    return (f"--attention-kernel {kernel} names a fused attention kernel: drop "
            "--no-flash-attention, or the kernel (attention_kernel, flash_attention in the "
            "Python API)")


class ParallelismSpec(Spec):
    """How devices are laid out: dp x tp x pp x cp = devices; ep splits experts inside dp."""

    devices: PositiveWhole
    tp: PositiveWhole = Field(1, description="Tensor-parallel degree (inside a scale-up domain).")
    pp: PositiveWhole = Field(1, description="Pipeline-parallel degree.")
    cp: PositiveWhole = Field(1, description="Context-parallel degree (splits the sequence).")
    ep: PositiveWhole = Field(1, description="Expert-parallel degree (MoE; divides dp).")
    zero_stage: ZeroStage = Field(
        1, description="0 plain DP; 1 shard optimizer; 2 + gradients; 3 + weights (FSDP)."
    )
    sequence_parallel: bool | None = Field(
        None, description="Megatron sequence parallelism; default on when tp > 1."
    )
    pipeline_schedule: Schedule = "1f1b"
    virtual_stages: PositiveWhole = Field(1, description="Model chunks per pipeline rank.")
    dp_shard: PositiveWhole | None = Field(
        None, description="ZeRO/FSDP shard group size within dp (HSDP: shard inside groups of "
        "this many data-parallel ranks, replicate across them; torchtitan dp_shard, ZeRO++ "
        "hpZ). Default: shard across all of dp."
    )
    reshard_after_forward: bool = Field(
        True, description="ZeRO-3/FSDP: free gathered parameters after each layer's forward "
        "and gather them again for backward (FSDP2's default); False keeps them until backward."
    )
    dp_comm_overlap: bool = Field(
        True, description="Overlap data-parallel collectives with compute, layer by layer "
        "(FSDP2 prefetch, Megatron-core --overlap-grad-reduce/--overlap-param-gather, "
        "DeepSpeed overlap_comm); False: they run after backward (Megatron-LM in 2021)."
    )
    tp_comm_overlap: bool = Field(
        False, description="Overlap tensor-parallel collectives with GEMMs (Megatron "
        "--tp-comm-overlap, PyTorch async TP)."
    )
    framework: Framework = Field(
        "generic", description="Whose conventions to follow: gradient dtype, fused kernels, "
        "overlap (megatron, fsdp2, deepspeed; generic is planner's own)."
    )
    offload: Offload = Field(
        "none", description="Keep optimizer states (and parameters) in host memory and step "
        "on the CPU (ZeRO-Offload, FSDP CPUOffload)."
    )

    @model_validator(mode="after")
    def _check(self) -> ParallelismSpec:
        mp = self.tp * self.pp * self.cp
        if self.devices % mp:
            raise ValueError(
                f"--devices {self.devices} is not divisible by --tp x --pp x --cp = "
                f"{self.tp} x {self.pp} x {self.cp} = {mp}; use a multiple of {mp} (devices, "
                "tp, pp, cp in the Python API)"
            )
        if self.dp % self.ep:
            raise ValueError(
                f"--ep {self.ep} must divide dp = {self.dp} (--devices / (--tp x --pp x "
                f"--cp)); valid --ep: {', '.join(str(d) for d in _divisors(self.dp))} (ep in "
                "the Python API)"
            )
        if self.virtual_stages > 1 and self.pipeline_schedule != "interleaved":
            raise ValueError(f"--virtual-stages {self.virtual_stages} needs --pipeline-schedule "
                             "interleaved (virtual_stages, pipeline_schedule in the Python API)")
        if self.offload != "none" and self.zero_stage == 0:
            raise ValueError(
                f"--offload {self.offload} needs --zero 1, 2 or 3 (zero_stage in the Python API): "
                "offload moves each rank's ZeRO partition of the optimizer states to the host "
                "(DeepSpeed's offload_optimizer is valid for stages 1-3 only; FSDP's "
                "CPUOffload is ZeRO-3)")
        if self.dp_shard is not None and self.dp % self.dp_shard:
            raise ValueError(
                f"--dp-shard {self.dp_shard} must divide dp = {self.dp}; valid --dp-shard: "
                f"{', '.join(str(d) for d in _divisors(self.dp))} (dp_shard in the Python API)"
            )
        if self.dp_shard is not None and self.dp_shard != self.dp and self.zero_stage == 0:
            raise ValueError(
                f"--dp-shard {self.dp_shard} needs --zero 1, 2 or 3 (dp_shard, zero_stage in the "
                f"Python API): without ZeRO nothing is sharded, and the gradients all-reduce "
                f"over all of dp = {self.dp}")
        return self

    @property
    def shard(self) -> int:
        """Data-parallel ranks a ZeRO/FSDP shard group spans (dp unless HSDP)."""
        return self.dp if self.dp_shard is None else self.dp_shard

    @property
    def dp(self) -> int:
        """Data-parallel degree: devices / (tp * pp * cp)."""
        return self.devices // (self.tp * self.pp * self.cp)

    @property
    def sp(self) -> bool:
        """Whether sequence parallelism is on."""
        return self.tp > 1 if self.sequence_parallel is None else self.sequence_parallel


class Assumptions(Spec):
    """Overrides for the planner's defaults. Anything left None uses a sourced default."""

    efficiency: EfficiencyRange | None = Field(
        None, description="Fraction of peak on executed FLOPs; default from the profile. "
        "A number is all three cases, (low, expected, high) the range."
    )
    goodput_low: float | None = Field(None, ge=MIN_FRACTION, le=1)
    goodput_expected: float | None = Field(None, ge=MIN_FRACTION, le=1)
    goodput_high: float | None = Field(None, ge=MIN_FRACTION, le=1)
    pue: float | None = Field(None, ge=1, le=3)
    grid_g_co2e_per_kwh: float | None = Field(None, ge=0, le=MAX_GRID_G_CO2E_PER_KWH)
    power_fraction: float | None = Field(None, gt=0, le=1.5, description="Avg power / TDP.")
    host_power_w_per_device: float | None = Field(None, ge=0)
    runtime_overhead_gib: float | None = Field(None, ge=0)
    fragmentation_fraction: float | None = Field(None, ge=0, lt=1)
    logits_bytes_per_element: float | None = Field(None, gt=0)
    price_tier: Name | None = None
    price_usd_per_device_hour: float | None = Field(None, gt=0)
    embodied_lifetime_years: float | None = Field(None, gt=0)
    failure_rate_per_device_hour: float | None = Field(
        None, ge=0, le=0.1, description="Job interruptions per device-hour (all kinds).")
    restart_minutes: float | None = Field(
        None, ge=0, le=1440, description="Minutes from an interruption to training again.")
    storage_gb_per_s: float | None = Field(
        None, ge=STORAGE_GB_PER_S[0], le=STORAGE_GB_PER_S[1],
        description="Aggregate checkpoint write bandwidth, GB/s.")
    stall_fraction: float | None = Field(
        None, ge=0, le=0.9, description="Share of wall clock lost outside failures "
        "(stragglers, data and evaluation pauses, hangs).")
    power_scope: Literal["accelerator", "server", "facility"] | None = Field(
        None, description="Scope of the energy and carbon figures (default facility).")

    @field_validator("efficiency", mode="before")
    @classmethod
    def _efficiency(cls, v):
        """efficiency=0.4 or (0.3, 0.4, 0.5) as --efficiency takes them; the source says
        the user set it (the CLI's own 'set by user (--efficiency)' when it came from there)."""
        if isinstance(v, bool):
            return v  # refused by the range's own validation, not taken for 1
        if isinstance(v, (int, float)):
            v = (v, v, v)
        if isinstance(v, (list, tuple)) and len(v) == 3:
            v = dict(zip(("low", "expected", "high"), v))
        if isinstance(v, dict) and "source" not in v:
            v = {**v, "source": "set by user (efficiency)"}
        return v


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]
