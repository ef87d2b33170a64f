"""Checks that a parallel layout is valid for a model, a batch and a device."""

from __future__ import annotations

from planner.errors import SpecError
from planner.estimators.finetune import check_finetune
from planner.estimators.step_time import attention_kernel_fraction
from planner.specs.hardware import HardwareProfile
from planner.specs.model import ModelSpec
from planner.specs.training import ParallelismSpec, TrainingSpec


def _divisors(n: int) -> str:
    return ", ".join(str(d) for d in range(1, n + 1) if n % d == 0)


def check_layout(
    model: ModelSpec, training: TrainingSpec, par: ParallelismSpec, hw: HardwareProfile
) -> None:
    """Raise SpecError (one line, with valid values) when the layout cannot run the model."""
    a, g = model.num_heads, model.kv_heads
    if a % par.tp:
        raise SpecError(f"tp={par.tp} must divide num_heads={a} of {model.name}; "
                        f"valid tp: {_divisors(a)}")
    if not model.mla and g % par.tp and par.tp % g:
        raise SpecError(f"tp={par.tp} and num_kv_heads={g} of {model.name}: one must divide "
                        "the other (KV heads are split or replicated across TP ranks)")
    domain = int(hw.scale_up_domain_devices.value)
    if par.tp > domain:
        raise SpecError(f"tp={par.tp} exceeds the scale-up domain of {hw.name} ({domain} "
                        f"devices); tensor parallelism needs the fast link, use tp <= {domain}")
    if par.pp * par.virtual_stages > model.num_layers:
        raise SpecError(f"pp={par.pp} x virtual_stages={par.virtual_stages} exceeds "
                        f"num_layers={model.num_layers}: every model chunk needs a layer")
    if training.seq_len % par.cp:
        raise SpecError(f"cp={par.cp} must divide seq_len={training.seq_len}")
    if par.ep > 1:
        if not model.moe:
            raise SpecError(f"ep={par.ep} needs a mixture-of-experts model; {model.name} is dense")
        if model.moe.num_experts % par.ep:
            raise SpecError(f"ep={par.ep} must divide num_experts={model.moe.num_experts}; "
                            f"valid ep: {_divisors(model.moe.num_experts)}")
    per_step = par.dp * training.micro_batch_size
    if training.global_batch_size % per_step:
        raise SpecError(
            f"global_batch_size={training.global_batch_size} must be a multiple of "
            f"dp x micro_batch_size = {par.dp} x {training.micro_batch_size} = {per_step}"
        )
    check_finetune(model, training.precision, hw.name, hw.vendor, hw.supported_precisions,
                   training.finetune)
    attention_kernel_fraction(hw, training.attention_kernel)  # refuses one without a figure
    if hw.peak_flops_per_s(training.precision) is None:
        raise SpecError(f"{hw.name} has no {training.precision} peak; valid precisions: "
                        f"{', '.join(hw.supported_precisions)}")
