"""Build a real model from a spec, train it a few steps, and compare with the estimators."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from planner.estimators.finetune import trainable_params
from planner.estimators.finetune_flops import leading_frozen_savings_per_token
from planner.estimators.flops import flash_backward_recompute_flops_per_token, training_flops
from planner.estimators.memory import MemoryDefaults, memory_per_device, saved_activation_bytes
from planner.estimators.params import count_params
from planner.estimators.step_time import (
    PerfParams, flops_inputs, step_seconds, step_time_terms,
)
from planner.estimators.vec import Degrees
from planner.profiling.report import Quantity, ValidationReport
from planner.specs import HardwareProfile, ModelSpec, ParallelismSpec, TrainingSpec
from planner.specs.finetune import FinetuneSpec

# Verdict thresholds: exact counts, then the accuracy each model aims for.
TOLERANCE = {"params": 0.0, "flops_per_step": 0.0, "activation_bytes": 1.0,
             "peak_memory_bytes": 10.0,
             "device_memory_bytes": 15.0, "step_time_s": 25.0, "mfu": 25.0, "energy_kwh": 30.0}
GPU_PROFILES = [("H100 PCIe", "h100-pcie"), ("H100 NVL", "h100-nvl"), ("H100", "h100-sxm"),
                ("H200", "h200"), ("H800", "h800"), ("GB200", "gb200"), ("B200", "b200"),
                ("A100-SXM4-40GB", "a100-40gb"), ("A100-PCIE-40GB", "a100-40gb"),
                ("A100", "a100-80gb"), ("L40S", "l40s"), ("L4", "l4"), ("A10G", "a10g"),
                ("V100", "v100"), ("4090", "rtx-4090")]


@dataclass(frozen=True)
class RunConfig:
    steps: int = 10
    warmup: int = 2
    micro_batch_size: int = 4
    seq_len: int = 256
    device: str = "cpu"
    dtype: str = "fp32"  # fp32 or bf16
    hardware: str | None = None  # profile for GPU peaks; detected when None
    seed: int = 0
    compile: bool = False  # time a torch.compile'd step (counts and probes stay eager)
    breakdown: bool = False  # also profile the step's time by the model's compute parts
    finetune: FinetuneSpec | None = None  # full, partial or lora (peft) instead of training


def profile_for_gpu(device_name: str) -> str | None:
    """The hardware profile name for a CUDA device name (H100 80GB HBM3 -> h100-sxm), matching
    whole words (an L40 is not an L4, a GH200 not an H200)."""
    words = f" {re.sub(r'[^a-z0-9]+', ' ', device_name.lower())} "
    return next((p for key, p in GPU_PROFILES
                 if f" {re.sub(r'[^a-z0-9]+', ' ', key.lower())} " in words), None)


def training_spec(cfg: RunConfig) -> TrainingSpec:
    """What the run does, in estimator terms: torch AdamW keeps its state in the param dtype
    (LoRA adapters are fp32 under peft's autocast, so their moments are fp32 too); the
    reference model runs eager PyTorch kernels, torch.compile fuses them."""
    lora = cfg.finetune is not None and cfg.finetune.uses_lora
    optimizer = "adamw" if cfg.dtype == "fp32" else (
        "adamw_pure_bf16" if lora else "adamw_all_bf16")
    return TrainingSpec(tokens=cfg.micro_batch_size * cfg.seq_len, seq_len=cfg.seq_len,
                        global_batch_size=cfg.micro_batch_size,
                        micro_batch_size=cfg.micro_batch_size, precision=cfg.dtype,
                        optimizer=optimizer, recompute="none", finetune=cfg.finetune,
                        kernels="fused" if cfg.compile else "eager")


def _dropout_mask_correction(spec: ModelSpec, t: TrainingSpec, cuda: bool) -> float:
    """Bytes the probe sees differently from the estimate's 1-byte LoRA dropout masks: a CPU
    dropout saves its mask in the input dtype, and the probe counts floating tensors only
    (CUDA's bool masks are not counted)."""
    from planner.estimators.finetune_memory import lora_dropout_mask_elements
    from planner.estimators.memory import activation_bytes_per_element

    n = lora_dropout_mask_elements(spec, t.finetune) * t.micro_batch_size * t.seq_len
    return n * (-1 if cuda else activation_bytes_per_element(t.precision) - 1)


def predicted_step(spec: ModelSpec, t: TrainingSpec,
                   hw: HardwareProfile) -> tuple[float, float, dict]:
    """(step seconds, MFU, the model's terms) from the step-time model on one device."""
    p = count_params(spec)
    deg = Degrees.from_specs(t, ParallelismSpec(devices=1, zero_stage=0))
    fl = flops_inputs(spec, t, p)
    terms = step_time_terms(spec, t, deg, hw, p, fl, PerfParams())
    step = step_seconds(terms)
    peak = hw.peak_flops_per_s(t.precision)
    return step, fl["model"] * t.seq_len * t.micro_batch_size / (step * peak), terms


def run_validation(spec: ModelSpec, cfg: RunConfig, energy=None,
                   on_step: Callable[[int], None] | None = None,
                   on_phase: Callable[[str], None] | None = None) -> ValidationReport:
    """Measure one configuration and return predicted vs measured for every quantity.

    ``energy`` is an optional meter with start() and stop() -> (kWh or None, method,
    seconds metered); profiling.energy.ValidationEnergyMeter is the real one. ``on_phase``
    hears what is being measured next ("counting FLOPs", ...); ``on_step`` each step.
    """
    import torch

    from planner.profiling import probes
    from planner.profiling.finetune import apply_finetune
    from planner.profiling.model import build_model
    from planner.profiling.shrink import check_cpu_size

    phase = on_phase or (lambda _text: None)
    phase("building the model")
    torch.manual_seed(cfg.seed)
    dtype = torch.float32 if cfg.dtype == "fp32" else torch.bfloat16
    check_cpu_size(spec, cfg.device)  # before anything is allocated
    model = apply_finetune(build_model(spec, cfg.device, dtype), spec, cfg.finetune,
                           cfg.device)
    trained = [p for p in model.parameters() if p.requires_grad]
    cuda = cfg.device.startswith("cuda")
    # fused AdamW on a GPU (what training scripts use: one kernel, no temporaries); on a CPU
    # the per-tensor loop, whose temporaries are one parameter at a time.
    opt = (torch.optim.AdamW(trained, lr=1e-4, fused=True) if cuda else
           torch.optim.AdamW(trained, lr=1e-4, foreach=False))
    tokens, targets = probes.make_batch(spec.vocab_size, cfg.micro_batch_size, cfg.seq_len,
                                        cfg.device, cfg.seed)
    t = training_spec(cfg)
    run = torch.compile(model) if cfg.compile else model

    def step() -> None:
        run(tokens, targets).backward()
        opt.step()
        opt.zero_grad(set_to_none=False)  # persistent grad buffers, as Megatron/DDP keep

    phase("loading the GPU's hardware profile" if cuda else
          "measuring this CPU's matmul peak and memory bandwidth")
    hw, device_name, peak_method = _hardware(cfg, dtype)
    rep = ValidationReport(
        device=cfg.device, device_name=device_name, torch_version=torch.__version__,
        dtype=cfg.dtype, model=spec.model_dump(mode="json", exclude_none=True),
        steps=cfg.steps, warmup=cfg.warmup, micro_batch_size=cfg.micro_batch_size,
        seq_len=cfg.seq_len, compiled=cfg.compile,
        optimizer="torch AdamW " + ("fused" if cuda else "for-loop"))
    try:
        _measure(rep, spec, cfg, t, hw, model, opt, tokens, targets, step, peak_method,
                 energy, (on_step, phase))
    except KeyboardInterrupt:
        rep.interrupted = True
        rep.flags.append("interrupted: the quantities above were measured before Ctrl-C")
    return rep


def _measure(rep, spec, cfg, t, hw, model, opt, tokens, targets, step, peak_method, energy,
             hooks) -> None:
    from planner.profiling import probes
    from planner.profiling.quiet import native_stderr_filtered

    on_step, phase = hooks

    p = count_params(spec)
    q = rep.quantities
    total = p.total
    if cfg.finetune is not None:
        tp = trainable_params(spec, cfg.finetune)
        total = tp.total
    q.append(Quantity("params", total, sum(x.numel() for x in model.parameters()), "params",
                      "sum of numel() over model.parameters()", TOLERANCE["params"]))
    if cfg.finetune is not None:
        q.append(Quantity("trainable_params", tp.trainable,
                          sum(x.numel() for x in model.parameters() if x.requires_grad),
                          "params", "numel() of the parameters with requires_grad (peft's "
                          "trainable params)", TOLERANCE["params"]))
    tokens_per_step = cfg.micro_batch_size * cfg.seq_len
    phase("counting FLOPs (one step under FlopCounterMode)")
    counted = probes.count_flops(model, tokens, targets)
    # A fused attention backward recomputes QK^T: counted, but not a model FLOP.
    recompute = (flash_backward_recompute_flops_per_token(spec, t) * tokens_per_step
                 if counted.fused_attention_backward else 0.0)
    flops_pred = training_flops(spec, t).model_per_token * tokens_per_step + recompute
    if cfg.finetune is not None:  # the backend counted may skip what fused kernels compute
        flops_pred += tokens_per_step * (
            leading_frozen_savings_per_token(spec, t, t.flash_attention) -
            leading_frozen_savings_per_token(spec, t, counted.fused_attention_backward))
    q.append(Quantity("flops_per_step", flops_pred, counted.total, "FLOPs",
                      "torch FlopCounterMode, forward + backward, " +
                      ("fused attention kernels (+ their QK^T recompute)" if recompute
                       else "MATH attention backend"),
                      TOLERANCE["flops_per_step"]))
    flops_meas = counted.total - recompute  # model FLOPs, for MFU
    par = ParallelismSpec(devices=1, zero_stage=0)
    phase("measuring saved activations")
    q.append(Quantity("activation_bytes", saved_activation_bytes(spec, t, par) +
                      _dropout_mask_correction(spec, t, cfg.device.startswith("cuda")),
                      probes.saved_activation_bytes(model, tokens, targets), "bytes",
                      "autograd saved_tensors_hooks, deduplicated by storage",
                      TOLERANCE["activation_bytes"]))
    phase("measuring peak memory (one step, then one profiled step)")
    step()  # creates the optimizer state so the peak below includes it
    with native_stderr_filtered():  # kineto's "USDT: ... profiler_start" lines
        peak_meas, mem_method = probes.peak_step_memory(step, model, opt, cfg.device)
    # Tensors only: no runtime overhead or allocator slack, which the allocator's peak and
    # the CPU profiler's events leave out too.
    accounted = memory_per_device(spec, t, par, hw.memory_bytes, MemoryDefaults(0.0, 0.0))
    q.append(Quantity("peak_memory_bytes", accounted.total_bytes, peak_meas, "bytes",
                      mem_method, TOLERANCE["peak_memory_bytes"]))
    if cfg.device.startswith("cuda"):
        # The whole device footprint a plan budgets for: + CUDA context and allocator slack.
        full = memory_per_device(spec, t, par, hw.memory_bytes, MemoryDefaults())
        used, how = probes.device_memory_peak()
        q.append(Quantity("device_memory_bytes", full.total_bytes, used, "bytes", how,
                          TOLERANCE["device_memory_bytes"]))
    phase("timing steps")
    _timed(rep, spec, t, hw, cfg, step, energy, on_step, flops_meas, peak_method)


def _hardware(cfg: RunConfig, dtype) -> tuple[HardwareProfile, str, str]:
    import torch

    from planner.catalog.catalog import load_hardware
    from planner.profiling import probes
    from planner.profiling.cpu_profile import cpu_profile

    if cfg.device.startswith("cuda"):
        name = torch.cuda.get_device_name()
        prof = cfg.hardware or profile_for_gpu(name)
        if prof is None:
            from planner.errors import SpecError
            raise SpecError(f"no hardware profile matches GPU '{name}'; pass --hardware NAME")
        return load_hardware(prof), name, f"{prof} profile dense {cfg.dtype} peak"
    peak = probes.cpu_matmul_peak(dtype)
    bw = probes.cpu_memory_bandwidth()
    return (cpu_profile(peak, bw), cpu_profile(peak, bw).display_name,
            f"measured {cfg.dtype} matmul peak of this CPU: {peak / 1e9:.1f} GFLOP/s")


def _timed(rep, spec, t, hw, cfg, step, energy, on_step, flops_meas, peak_method) -> None:
    from planner.profiling import probes
    from planner.profiling.contention import CpuContention

    busy = CpuContention().start()
    if energy is not None:
        energy.start()
    times = probes.time_steps(step, cfg.steps, cfg.warmup, cfg.device, on_step)
    kwh, energy_method, window_s = (energy.stop() if energy is not None
                                    else (None, "not measured", 0.0))
    other = busy.stop()
    rep.interrupted = times.interrupted
    pred_step, pred_mfu, terms = predicted_step(spec, t, hw)
    peak = hw.peak_flops_per_s(t.precision)
    if not times.times_s:
        rep.flags.append("interrupted before any timed step")
        return
    med = times.median_s
    rep.quantities.append(Quantity(
        "step_time_s", pred_step, med, "s",
        f"median of {len(times.times_s)} steps after {times.warmup} warm-up, "
        f"IQR {times.spread_pct:.0f}% of median", TOLERANCE["step_time_s"]))
    rep.quantities.append(Quantity("mfu", pred_mfu, flops_meas / med / peak, "fraction of peak",
                                   f"counted model FLOPs / median step / {peak_method}",
                                   TOLERANCE["mfu"]))
    # The energy covers the meters' whole window (steps + the meters' start and stop), so
    # the prediction (TDP x power fraction 1.0, as estimate's default) covers it too.
    duration_s = window_s or sum(times.times_s)
    pred_kwh = hw.tdp_w.value * duration_s / 3.6e6 if hw.tdp_w.value else None
    rep.quantities.append(Quantity("energy_kwh", pred_kwh, kwh, "kWh",
                                   energy_method + (f"; over {window_s:.1f} s metered"
                                                    if kwh is not None else ""),
                                   TOLERANCE["energy_kwh"] if kwh is not None and
                                   "estimate" not in energy_method else None))
    if cfg.breakdown:
        _breakdown(rep, cfg, step, terms)
    if other is not None and other > 0.5:
        rep.flags.append(f"CPU busy with other work: {other:.1f} cores used by other processes "
                         "while timing; step time and MFU are unreliable")
    if times.spread_pct > 20:
        rep.flags.append(f"step times vary: IQR {times.spread_pct:.0f}% of the median")
    if times.interrupted:
        rep.flags.append(f"interrupted: {len(times.times_s)} of {cfg.steps} steps measured")


# The step-time model's terms that each measured part is compared with.
_BREAKDOWN = (("gemm", "compute_gemm"), ("attention", "compute_attention"),
              ("memory", "compute_memory"), ("optimizer", "optimizer"))


def _breakdown(rep, cfg: RunConfig, step, terms: dict) -> None:
    """Time per step by part (GEMM, attention, memory-bound, optimizer), profiled, beside
    the model's terms: informational rows that say which part a step-time error is in."""
    from planner.profiling.breakdown import measure_parts
    from planner.profiling.quiet import native_stderr_filtered

    with native_stderr_filtered():
        parts = measure_parts(step, cfg.device)
    how = ("torch.profiler CUDA kernel time, sorted by kernel name" if cfg.device != "cpu"
           else "torch.profiler ATen operator self time, sorted by operator name")
    for part, term in _BREAKDOWN:
        rep.quantities.append(Quantity(f"{part}_s", float(terms[term]), parts[part], "s",
                                       how, None))
