"""`planner estimate`: one plan's parameters, FLOPs, memory, time, cost, energy and carbon."""

from __future__ import annotations

import click

from planner.cli.options import COUNT, RANGE, format_option, profiles_option
from planner.errors import InfeasibleError
from planner.units import GIB


def _shape_options(f):
    for name, help_ in reversed([
        ("layers", "Override/define: transformer layers."),
        ("d-model", "Override/define: hidden width."),
        ("heads", "Override/define: query heads."),
        ("kv-heads", "Override/define: key/value heads (GQA/MQA)."),
        ("head-dim", "Override/define: per-head dim."),
        ("ffn-hidden", "Override/define: FFN width."),
        ("vocab", "Override/define: vocabulary size."),
        ("experts", "Override/define: routed experts (makes the model MoE)."),
        ("top-k", "Override/define: experts per token."),
    ]):
        f = click.option(f"--{name}", type=click.IntRange(min=1), help=help_)(f)
    return f


def _fit_advice(est) -> str:
    mem, lay = est.memory_per_device, est.layout
    over = -mem.headroom_bytes / GIB
    tries = []
    if mem.activations_bytes > mem.weights_bytes + mem.optimizer_bytes and lay.recompute != "full":
        tries.append("--recompute full")
    if lay.zero_stage < 3 and lay.dp > 1:
        tries.append(f"--zero {lay.zero_stage + 1}")
    tries += ["a larger --tp or --pp", "more --devices"]
    if lay.micro_batch_size > 1:
        tries.insert(0, "--micro-batch 1")
    return (f"layout does not fit: needs {mem.total_bytes / GIB:.1f} GiB per device "
            f"({mem.stage} stage) on {est.hardware.name} with {mem.capacity_bytes / GIB:.1f} "
            f"GiB, {over:.1f} GiB over; try {', '.join(tries)} (or --no-fit-check to see it)")


@click.command("estimate")
@click.option("--model", "-m", help="Preset name, model YAML file, or HF config.json.")
@_shape_options
@click.option("--hardware", "-H", help="Hardware profile name (see `planner hardware list`).")
@profiles_option
@click.option("--devices", "-n", type=click.IntRange(min=1), help="Number of devices.")
@click.option("--tokens", "-t", type=COUNT, help="Training tokens: 15T, 300B, 2e12.")
@click.option("--seq-len", type=click.IntRange(min=1), help="Sequence length (tokens).")
@click.option("--global-batch", type=click.IntRange(min=1), help="Sequences per step.")
@click.option("--micro-batch", type=click.IntRange(min=1), help="Sequences per micro-batch.")
@click.option("--precision", type=click.Choice(["bf16", "fp16", "fp8", "tf32", "fp32"]))
@click.option("--optimizer", type=click.Choice(["adamw", "adamw_pure_bf16", "adamw_all_bf16",
                                                "adamw_8bit", "adamw_fp8", "sgd_momentum"]))
@click.option("--recompute", type=click.Choice(["none", "selective", "full"]))
@click.option("--flash-attention/--no-flash-attention", default=None)
@click.option("--attention-flops", type=click.Choice(["full", "causal"]),
              help="Count full score matrices (PaLM/Megatron MFU) or the causal half.")
@click.option("--tp", type=click.IntRange(min=1), help="Tensor-parallel degree.")
@click.option("--pp", type=click.IntRange(min=1), help="Pipeline-parallel degree.")
@click.option("--cp", type=click.IntRange(min=1), help="Context-parallel degree.")
@click.option("--ep", type=click.IntRange(min=1), help="Expert-parallel degree (MoE).")
@click.option("--zero", type=click.Choice(["0", "1", "2", "3", "fsdp"]),
              help="ZeRO stage (fsdp = 3).")
@click.option("--sequence-parallel/--no-sequence-parallel", default=None)
@click.option("--pipeline-schedule", type=click.Choice(["1f1b", "interleaved", "gpipe"]))
@click.option("--virtual-stages", type=click.IntRange(min=1))
@click.option("--region", "-r", help="FR, US-VA, aws:us-east-1, gcp:europe-west4, ...")
@click.option("--grid", "grid_g", type=click.FloatRange(min=0),
              help="Grid intensity, g CO2e/kWh (overrides --region's).")
@click.option("--pue", type=click.FloatRange(min=1, max=3))
@click.option("--efficiency", type=RANGE, help="Fraction of peak: 0.4 or 0.3:0.4:0.5.")
@click.option("--goodput", type=RANGE, help="Useful time fraction: 0.9 or 0.8:0.9:0.95.")
@click.option("--power-fraction", type=click.FloatRange(min=0.01, max=1.5),
              help="Average accelerator power / TDP (default 1.0).")
@click.option("--price-tier", help="Price tier in the profile: on_demand, spot, ...")
@click.option("--price-per-hour", type=click.FloatRange(min=0, min_open=True),
              help="Your own USD per device-hour.")
@click.option("--no-fit-check", is_flag=True, help="Print the estimate even if it does not fit.")
@format_option
def estimate_cmd(model, hardware, profiles_dirs, devices, tokens, region, grid_g, efficiency,
                 goodput, zero, no_fit_check, fmt, price_per_hour, **opts) -> None:
    """Estimate parameters, FLOPs, memory, time, cost, energy and carbon for one plan.

    With no options it runs a built-in plan (llama3-8b on 64 x h100-sxm, 1T tokens).
    Every default it fills in is listed under Assumptions.
    """
    from planner.api import estimate_plan
    from planner.report import render_estimate

    shape = {k: opts.pop(k) for k in ("layers", "d_model", "heads", "kv_heads", "head_dim",
                                      "ffn_hidden", "vocab", "experts", "top_k")}
    rename = {"global_batch": "global_batch_size", "micro_batch": "micro_batch_size"}
    options = {rename.get(k, k): v for k, v in opts.items()}
    options["zero_stage"] = None if zero is None else (3 if zero == "fsdp" else int(zero))
    options["grid_g_co2e_per_kwh"] = grid_g
    options["price_usd_per_device_hour"] = price_per_hour
    if efficiency:
        lo, ex, hi = efficiency
        options["efficiency"] = {"low": lo, "expected": ex, "high": hi,
                                 "source": "set by user (--efficiency)"}
    if goodput:
        options.update(goodput_low=goodput[0], goodput_expected=goodput[1],
                       goodput_high=goodput[2])
    est = estimate_plan(model, hardware, devices, tokens, region, profiles_dirs, shape,
                        **options)
    if not est.memory_per_device.fits and not no_fit_check:
        raise InfeasibleError(_fit_advice(est))
    click.echo(render_estimate(est, fmt), nl=False)
