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
    # Each message names the flags as given on the command line, the Python API's names last.
    a, g = model.num_heads, model.kv_heads
    if a % par.tp:
        raise SpecError(f"--tp {par.tp} must divide the {a} attention heads of {model.name}; "
                        f"valid --tp: {_divisors(a)} (tp, num_heads in the Python API)")
    if not model.mla and g % par.tp and par.tp % g:
        raise SpecError(f"--tp {par.tp} and the {g} KV heads of {model.name}: one must divide "
                        "the other (KV heads are split or replicated across TP ranks) (tp, "
                        "num_kv_heads in the Python API)")
    domain = int(hw.scale_up_domain_devices.value)
    if par.tp > domain:
        raise SpecError(f"--tp {par.tp} exceeds the scale-up domain of {hw.name} ({domain} "
                        f"devices); tensor parallelism needs the fast link, give --tp {domain} "
                        "or less (tp in the Python API)")
    if par.pp * par.virtual_stages > model.num_layers:
        raise SpecError(f"--pp {par.pp} x --virtual-stages {par.virtual_stages} exceeds the "
                        f"model's {model.num_layers} layers ({model.name}): every model chunk "
                        f"needs a layer; give --pp x --virtual-stages of at most "
                        f"{model.num_layers} (pp, virtual_stages in the Python API)")
    if training.seq_len % par.cp:
        raise SpecError(f"--cp {par.cp} must divide --seq-len {training.seq_len} (cp, seq_len "
                        "in the Python API)")
    if par.ep > 1:
        if not model.moe:
            raise SpecError(f"--ep {par.ep} needs a mixture-of-experts model; {model.name} is "
                            "dense: leave --ep out (ep in the Python API)")
        if model.moe.num_experts % par.ep:
            raise SpecError(f"--ep {par.ep} must divide the {model.moe.num_experts} experts of "
                            f"{model.name}; valid --ep: {_divisors(model.moe.num_experts)} (ep, "
                            "num_experts in the Python API)")
    per_step = par.dp * training.micro_batch_size
    if training.global_batch_size % per_step:
        raise SpecError(
            f"--global-batch {training.global_batch_size} must be a multiple of dp x "
            f"--micro-batch = {par.dp} x {training.micro_batch_size} = {per_step}, where dp = "
            "--devices / (--tp x --pp x --cp) (global_batch_size, micro_batch_size in the "
            "Python API)"
        )
    check_finetune(model, training.precision, hw.name, hw.vendor, hw.supported_precisions,
                   training.finetune)
    attention_kernel_fraction(hw, training.attention_kernel)  # refuses one without a figure
    if hw.peak_flops_per_s(training.precision) is None:
        raise SpecError(f"{hw.name} has no {training.precision} peak; valid precisions: "
                        f"{', '.join(hw.supported_precisions)}")
