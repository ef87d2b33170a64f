"""`planner validate` (a real run against the estimators) and `planner calibration`."""

from __future__ import annotations

import datetime
import os
from pathlib import Path

import click

from planner.cli.options import COUNT, format_option
from planner.errors import PlannerError, SpecError
from planner.report.tabular import dumps_json
from planner.vocab import LINK_LEVELS

DEFAULT_MODEL, DEFAULT_SCALE = "llama3-8b", 20e6
# On a GPU the default fills the card (a 20M model is launch-bound and says little about
# the step-time model): the 1B llama-style model at 4 x 2048 tokens, as in docs/validation.
GPU_DEFAULT_MODEL, GPU_DEFAULT_SEQ_LEN, CPU_DEFAULT_SEQ_LEN = "llama3.2-1b", 2048, 256
# (timed steps, warm-up). A CPU step of the default 20M model takes 1.5-2.5 s on a 2-core VM
# and the probes cost about four more (FLOP count, activations, two memory steps), so 6 + 1
# keeps the default run under 60 s there (benchmarks/validate_speed.py). GPU steps are cheap.
CPU_STEPS, GPU_STEPS = (6, 1), (10, 2)


def defaults_for(device: str, model: str | None, scale_to: float | None,
                 seq_len: int | None) -> tuple[str, float | None, int]:
    """(model, scale_to, seq_len) with the device's defaults where the user gave none."""
    gpu = device == "cuda"
    if seq_len is None:
        seq_len = GPU_DEFAULT_SEQ_LEN if gpu and model is None else CPU_DEFAULT_SEQ_LEN
    if model is None:
        model, scale_to = ((GPU_DEFAULT_MODEL, scale_to) if gpu
                           else (DEFAULT_MODEL, scale_to or DEFAULT_SCALE))
    return model, scale_to, seq_len


def _spec(model: str, scale_to: float | None, device: str):
    """The model to build; the CPU size guard applies to it after any --scale-to (which only
    shrinks: --scale-to 1e30 leaves a model full-size), so nothing huge is allocated."""
    from planner.catalog.catalog import load_model
    from planner.profiling.shrink import check_cpu_size, shrink

    spec = load_model(model)
    if scale_to:
        spec = shrink(spec, scale_to)
    check_cpu_size(spec, device, scale_to)
    return spec


def _check_outputs(calibrate: bool, calibration_path: str | None) -> None:
    """Prove, before the (long) run, that the calibration file can be read and written."""
    if not calibrate:
        return
    from planner.catalog import calibrations as calibration
    from planner.fileio import check_writable

    path = Path(calibration_path).expanduser() if calibration_path else \
        calibration.default_path()
    check_writable(path, "the calibration file", create_parents=True)
    calibration.load(path)  # a broken file fails now, not after the run


def _shape_line(spec, n: int) -> str:
    moe = (f", {spec.moe.num_experts} experts top-{spec.moe.experts_per_token}"
           if spec.moe else "")
    mla = ", MLA" if spec.mla else ""
    return (f"{spec.name}: {n / 1e6:.1f}M params, {spec.num_layers} layers, d_model "
            f"{spec.d_model}, {spec.num_heads} heads / {spec.kv_heads} KV, FFN "
            f"{spec.ffn_hidden_size}, vocab {spec.vocab_size}{moe}{mla}")


def _render(rep, fmt: str) -> str:
    from planner.report.tabular import render_rows

    if fmt == "json":
        return dumps_json(rep.to_dict()) + "\n"
    rows = [{**q.to_dict(), "error_pct": None if q.error_pct is None else f"{q.error_pct:+.2f}"}
            for q in rep.quantities]
    cols = ["name", "predicted", "measured", "error_pct", "verdict", "unit", "method"]
    if fmt == "csv":
        return render_rows(rows, cols, "csv")
    head = (f"device {rep.device} ({rep.device_name}), torch {rep.torch_version}, {rep.dtype}, "
            f"{rep.steps} steps after {rep.warmup} warm-up, micro-batch {rep.micro_batch_size}"
            f" x {rep.seq_len} tokens{', torch.compile' if rep.compiled else ''}\n")
    flags = "".join(f"flag: {f}\n" for f in rep.flags)
    return head + render_rows(rows, cols, fmt) + flags


@click.command("validate")
@click.option("--model", "-m", help=f"Preset or model file (default: {DEFAULT_MODEL} shrunk to "
                                    f"{DEFAULT_SCALE / 1e6:.0f}M on a CPU, {GPU_DEFAULT_MODEL} "
                                    "on a GPU).")
@click.option("--scale-to", type=COUNT, help="Shrink the model to about N parameters: 50M.")
@click.option("--steps", type=click.IntRange(min=1),
              help=f"Timed steps (default: {CPU_STEPS[0]} on a CPU, {GPU_STEPS[0]} on a GPU).")
@click.option("--warmup", type=click.IntRange(min=0),
              help=f"Warm-up steps before them (default: {CPU_STEPS[1]} on a CPU, "
                   f"{GPU_STEPS[1]} on a GPU).")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), help="Default: cuda if present.")
@click.option("--dtype", type=click.Choice(["fp32", "bf16"]),
              help="Default: fp32 on CPU (bf16 matmuls are slow on many CPUs), bf16 on GPU.")
@click.option("--micro-batch", type=click.IntRange(min=1), default=4, show_default=True)
@click.option("--seq-len", type=click.IntRange(min=8),
              help=f"Default: {CPU_DEFAULT_SEQ_LEN}; {GPU_DEFAULT_SEQ_LEN} with the GPU's "
                   "default model.")
@click.option("--hardware", "-H", help="Hardware profile of the GPU (detected by default).")
@click.option("--compile", "compile_", is_flag=True,
              help="Time a torch.compile'd step (fused kernels); counts stay eager.")
@click.option("--breakdown", is_flag=True,
              help="Also profile the step by the model's parts: GEMM, attention, "
                   "memory-bound, optimizer.")
@click.option("--region", "-r", help="Region for the energy meter's grid data (default: US).")
@click.option("--energy/--no-energy", default=True, show_default=True,
              help="Meter energy with codecarbon (and NVML on NVIDIA GPUs).")
@click.option("--max-error", type=click.FloatRange(min=0),
              help="Exit non-zero when any measured quantity is further off than PCT %.")
@click.option("--calibrate", is_flag=True,
              help="Store the measured efficiency for estimates (with --distributed on GPUs: "
                   "the measured link bandwidth).")
@click.option("--calibration", "calibration_path", type=click.Path(dir_okay=False),
              help="Calibration file (default $PLANNER_CALIBRATION or "
                   "~/.config/planner/calibration.json).")
@click.option("--serve", is_flag=True,
              help="Time prefill and decode steps instead of training (planner serve's model).")
@click.option("--distributed", is_flag=True, help="Run under torchrun: data-parallel check.")
@click.option("--strategy", type=click.Choice(["ddp", "fsdp"]), default="ddp",
              show_default=True, help="With --distributed.")
@click.option("--level", type=click.Choice(LINK_LEVELS),
              help="With --distributed --calibrate where one scale-up domain spans nodes "
                   "(NVL72): the link the ranks used (`planner calibration link --help`).")
@click.option("--finetune", type=click.Choice(["full", "partial", "lora", "qlora"]),
              help="Fine-tune instead: lora wraps the model with peft (qlora needs a GPU).")
@click.option("--lora-rank", type=click.IntRange(min=1), help="LoRA rank (default 16).")
@click.option("--lora-targets", help="peft module names or q,k,v,o,gate,up,down (default q,v).")
@click.option("--lora-dropout", type=click.FloatRange(min=0, max=1, max_open=True),
              help="peft's lora_dropout (default 0).")
@click.option("--trainable-layers", type=click.IntRange(min=0),
              help="partial: how many of the last blocks train.")
@format_option
def validate_cmd(model, scale_to, steps, warmup, device, dtype, micro_batch, seq_len, hardware,
                 compile_, breakdown, region, energy, max_error, calibrate, calibration_path, serve,
                 distributed, strategy, level, finetune, lora_rank, lora_targets, lora_dropout,
                 trainable_layers, fmt) -> None:
    """Train a real model a few steps and compare every estimate with the measurement."""
    from planner.profiling import require_torch

    torch = require_torch()
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise SpecError("--device cuda: no CUDA device is visible; use --device cpu")
    dtype = dtype or ("bf16" if device == "cuda" else "fp32")
    default_steps = GPU_STEPS if device == "cuda" else CPU_STEPS
    steps = default_steps[0] if steps is None else steps
    warmup = default_steps[1] if warmup is None else warmup
    model, scale_to, seq_len = defaults_for(device, model, scale_to, seq_len)
    _check_outputs(calibrate, calibration_path)
    spec = _spec(model, scale_to, device)
    if serve:
        from planner.cli.validate_serve import validate_serve

        return validate_serve(spec, device, dtype, steps, warmup, hardware, fmt)
    ft = _finetune(spec, {"finetune": finetune, "lora_rank": lora_rank,
                          "lora_targets": lora_targets, "lora_dropout": lora_dropout,
                          "trainable_layers": trainable_layers}, distributed, calibrate)
    if ft is not None and ft.mode == "qlora" and device != "cuda":
        raise SpecError("--finetune qlora: validate builds NF4 weights with bitsandbytes on a "
                        "CUDA GPU only; use --finetune lora on this machine")
    if distributed:
        return _distributed(spec, strategy, steps, warmup, micro_batch, seq_len, dtype, fmt,
                            device, hardware, calibrate, calibration_path, level)
    from planner.cli.progress import Progress
    from planner.estimators.params import count_params
    from planner.profiling.validate import RunConfig, run_validation

    cfg = RunConfig(steps=steps, warmup=warmup, micro_batch_size=micro_batch, seq_len=seq_len,
                    device=device, dtype=dtype, hardware=hardware, compile=compile_,
                    breakdown=breakdown, finetune=ft)
    click.echo(f"model used: {_shape_line(spec, count_params(spec).total)}", err=True)
    meter = _energy_meter(region, device) if energy else None
    with Progress(steps + warmup, warmup) as progress:
        rep = run_validation(spec, cfg, meter, on_step=progress.step,
                             on_phase=progress.phase)
    click.echo(_render(rep, fmt), nl=False)
    if calibrate:
        _calibrate(rep, spec, cfg, calibration_path)
    _check_max_error(rep, max_error)


def _distributed(spec, strategy, steps, warmup, micro_batch, seq_len, dtype, fmt, device,
                 hardware, calibrate, calibration_path, level=None) -> None:
    """The data-parallel check; with --calibrate, also a link calibration from its ranks'
    all-reduce bus bandwidth (GPUs only: gloo on CPU measures no accelerator link)."""
    from planner.profiling.distributed import run_distributed
    from planner.report.distributed import render_distributed

    if calibrate and device != "cuda":
        raise SpecError("--calibrate with --distributed stores the measured link bandwidth of "
                        "GPUs (NCCL); gloo on a CPU measures no accelerator link: run it on GPUs")
    if calibrate and "RANK" in os.environ and int(os.environ.get("WORLD_SIZE", "1")) < 2:
        raise SpecError("--calibrate with --distributed measures a collective: run at least 2 "
                        "ranks (torchrun --nproc-per-node 2 or more)")
    out = run_distributed(spec, strategy, steps, warmup, micro_batch, seq_len, dtype, fmt,
                          measure_link=calibrate)
    if out is None:  # not rank 0
        return
    click.echo(render_distributed(out, fmt), nl=False)
    if calibrate:
        _calibrate_link(out, hardware, calibration_path, level)


def _calibrate_link(out, hardware: str | None, path: str | None, level: str | None) -> None:
    from planner.catalog.catalog import load_hardware
    from planner.profiling.validate import profile_for_gpu

    from planner.cli.calibration import check_device, save_link

    name = hardware or profile_for_gpu(out.device_name)
    if name is None:
        raise SpecError(f"--calibrate: no hardware profile matches {out.device_name!r}; give "
                        "--hardware (`planner hardware list`)")
    hw = load_hardware(name)
    check_device(hw, out.device_name, "this run")
    save_link(hw, "all_reduce", out.ranks_per_host, out.link_message_bytes,
              out.link_bus_bandwidth_b_per_s / 1e9,
              f"planner validate --distributed ({out.strategy})", out.device_name, level,
              Path(path).expanduser() if path else None)


def _finetune(spec, given: dict, distributed: bool, calibrate: bool):
    """The recipe to validate (None: training from scratch), checked against the model."""
    from planner.estimators.finetune import resolve_targets
    from planner.planning.finetune import check_layers, finetune_spec

    ft = finetune_spec({k: v for k, v in given.items() if v is not None})
    if ft is None:
        return None
    if distributed or calibrate:
        raise SpecError(f"--finetune with {'--distributed' if distributed else '--calibrate'} "
                        "is not supported; validate a fine-tune on one device without it")
    if ft.uses_lora:
        resolve_targets(spec, ft.lora_targets)
    check_layers(ft, spec)
    return ft


def _energy_meter(region: str | None, device: str):
    try:
        from planner.profiling.energy import ValidationEnergyMeter
    except ImportError:
        return None
    return ValidationEnergyMeter(region, gpu=device == "cuda")


def _calibrate(rep, spec, cfg, path) -> None:
    from planner.catalog import calibrations as calibration
    from planner.estimators.step_time import PERF_MODEL_VERSION
    from planner.profiling.validate import profile_for_gpu

    mfu = rep.get("mfu")
    if mfu is None or mfu.measured is None:
        raise PlannerError("--calibrate: no step was timed, nothing to store")
    hw = cfg.hardware or (profile_for_gpu(rep.device_name) if cfg.device == "cuda" else "cpu")
    params = int(rep.get("params").measured)
    entry = calibration.Calibration(
        hardware=hw or "unknown-gpu", precision=cfg.dtype, params=params,
        shape=_shape_line(spec, params).split(":")[0] + f" ({spec.num_layers} layers, d_model "
        f"{spec.d_model})", seq_len=cfg.seq_len, micro_batch_size=cfg.micro_batch_size,
        measured_mfu=mfu.measured, measured_hfu=mfu.measured, predicted_mfu=mfu.predicted,
        date=datetime.date.today().isoformat(), device_name=rep.device_name,
        model_version=PERF_MODEL_VERSION, kernels="fused" if cfg.compile else "eager")
    saved = calibration.save(entry, Path(path).expanduser() if path else None)
    click.echo(f"calibration saved to {saved}: {entry.describe()}", err=True)
    if rep.flags:
        click.echo("note: this run was flagged; the calibration may be unreliable", err=True)


def _check_max_error(rep, max_error: float | None) -> None:
    if max_error is None:
        return
    # Informational rows (no tolerance: --breakdown's parts) are shown, not judged.
    off = [q for q in rep.quantities if q.error_pct is not None and q.tolerance_pct is not None
           and abs(q.error_pct) > max_error]
    if off:
        worst = max(off, key=lambda q: abs(q.error_pct))
        raise PlannerError(f"{len(off)} quantit{'y is' if len(off) == 1 else 'ies are'} more "
                           f"than {max_error:g}% off; worst: {worst.name} {worst.error_pct:+.1f}%")
