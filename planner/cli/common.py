"""Option groups shared by estimate, plan and compare, and their translation to the API."""

from __future__ import annotations

from typing import Any

import click

from planner.cli.options import RANGE, TEXT, TOKENS, BoundedInt, FiniteFloat
from planner.units import MAX_GRID_G_CO2E_PER_KWH, STORAGE_GB_PER_S
from planner.vocab import (
    ATTENTION_KERNELS, FRAMEWORKS, GRAD_DTYPES, KERNELS, OFFLOADS, OPTIMIZERS, PRECISIONS, RECOMPUTE, SCHEDULES,
    api_training_options,
)

SHAPE_FLAGS = ("layers", "d_model", "heads", "kv_heads", "head_dim", "ffn_hidden", "vocab",
               "experts", "top_k")


def _apply(f, options):
    for opt in reversed(options):
        f = opt(f)
    return f


def model_options(f):
    """--model plus the shape flags that change it (or define a custom model)."""
    opts = [click.option("--model", "-m", type=TEXT,
                         help="Preset name, model YAML file, or HF config.json.")]
    for name, help_ in (
        ("layers", "transformer layers"), ("d-model", "hidden width"), ("heads", "query heads"),
        ("kv-heads", "key/value heads (GQA/MQA)"), ("head-dim", "per-head dim"),
        ("ffn-hidden", "FFN width"), ("vocab", "vocabulary size"),
        ("experts", "routed experts (makes the model MoE)"), ("top-k", "experts per token"),
    ):
        opts.append(click.option(f"--{name}", type=BoundedInt(min=1),
                                 help=f"Override or define: {help_}."))
    return _apply(f, opts)


_RUN_TRAINING = [
    click.option("--seq-len", type=BoundedInt(min=1), help="Sequence length (tokens)."),
    click.option("--global-batch", type=BoundedInt(min=1), help="Sequences per step."),
    click.option("--micro-batch", type=BoundedInt(min=1),
                 help="Sequences per micro-batch."),
    click.option("--precision", type=click.Choice(PRECISIONS)),
    click.option("--optimizer", type=click.Choice(OPTIMIZERS)),
    click.option("--recompute", type=click.Choice(RECOMPUTE)),
    click.option("--flash-attention/--no-flash-attention", default=None),
    click.option("--attention-flops", type=click.Choice(["full", "causal"]),
                 help="Count full score matrices (PaLM/Megatron MFU) or the causal half."),
    click.option("--dropout/--no-dropout", default=None,
                 help="Dropout on: its masks are saved for backward (default off)."),
    click.option("--kernels", type=click.Choice(KERNELS),
                 help="fused (default: Megatron, Transformer Engine, Liger, torch.compile) "
                      "or eager PyTorch elementwise kernels."),
    click.option("--attention-kernel", type=click.Choice(ATTENTION_KERNELS),
                 help="native (default: the fused kernel written for the device) or fa2 "
                      "(FlashAttention-2, PyTorch SDPA's flash backend; 0.57x on Hopper)."),
    click.option("--grad-dtype", type=click.Choice(GRAD_DTYPES),
                 help="Dtype gradients accumulate and reduce in: fp32 or the 16-bit compute "
                      "dtype (default: the --framework's convention)."),
]


def training_options(f):
    """What is trained: tokens, sequence, batch, precision, optimizer, recompute."""
    return _apply(f, [
        click.option("--tokens", "-t", type=TOKENS, help="Training tokens: 15T, 300B, 2e12."),
        *_RUN_TRAINING])


def run_training_options(f):
    """How a run trains, without its tokens (`planner measure` has its own --tokens)."""
    return _apply(f, _RUN_TRAINING)


# the click parameter names of run_training_options and layout_options, which `planner
# measure` records for `planner calibration add`
RUN_TRAINING_KEYS = ("seq_len", "global_batch", "micro_batch", "precision", "optimizer",
                     "recompute", "flash_attention", "attention_flops", "dropout", "kernels",
                     "attention_kernel", "grad_dtype")
LAYOUT_KEYS = ("tp", "pp", "cp", "ep", "zero", "sequence_parallel", "pipeline_schedule",
               "virtual_stages", "dp_shard", "reshard_after_forward", "tp_comm_overlap",
               "dp_comm_overlap", "framework", "offload")


def layout_options(f):
    """Parallel degrees (fixed values for a search, or the layout for an estimate)."""
    return _apply(f, [
        click.option("--tp", type=BoundedInt(min=1), help="Tensor-parallel degree."),
        click.option("--pp", type=BoundedInt(min=1), help="Pipeline-parallel degree."),
        click.option("--cp", type=BoundedInt(min=1), help="Context-parallel degree."),
        click.option("--ep", type=BoundedInt(min=1), help="Expert-parallel degree (MoE)."),
        click.option("--zero", type=click.Choice(["0", "1", "2", "3", "fsdp"]),
                     help="ZeRO stage (fsdp = 3)."),
        click.option("--sequence-parallel/--no-sequence-parallel", default=None),
        click.option("--pipeline-schedule", type=click.Choice(SCHEDULES)),
        click.option("--virtual-stages", type=BoundedInt(min=1)),
        click.option("--dp-shard", type=BoundedInt(min=1),
                     help="HSDP: shard ZeRO/FSDP states within groups of N data-parallel "
                          "ranks, replicate across them (default: all of dp)."),
        click.option("--reshard-after-forward/--no-reshard-after-forward", default=None,
                     help="ZeRO-3/FSDP: free gathered parameters after forward (default) "
                          "or keep them until backward."),
        click.option("--tp-comm-overlap/--no-tp-comm-overlap", default=None,
                     help="Overlap tensor-parallel collectives with GEMMs."),
        click.option("--dp-comm-overlap/--no-dp-comm-overlap", default=None,
                     help="Overlap data-parallel collectives with compute (default on)."),
        click.option("--framework", type=click.Choice(FRAMEWORKS),
                     help="Follow a framework's conventions (gradient dtype, fused kernels, overlap)."),
        click.option("--offload", type=click.Choice(OFFLOADS),
                     help="Keep optimizer states (and parameters) in host memory."),
    ])


def assumption_options(f):
    """Where and at what price: region, grid, PUE, efficiency, goodput, power, price."""
    return _apply(f, [
        click.option("--region", "-r", type=TEXT,
                     help="FR, US-VA, aws:us-east-1, gcp:europe-west4, ..."),
        click.option("--grid", "grid_g", type=FiniteFloat(min=0, max=MAX_GRID_G_CO2E_PER_KWH),
                     help="Grid intensity, g CO2e/kWh (overrides --region's)."),
        click.option("--pue", type=FiniteFloat(min=1, max=3)),
        click.option("--efficiency", type=RANGE,
                     help="Flat fraction of peak instead of the performance model: 0.4 or "
                          "0.3:0.4:0.5."),
        click.option("--goodput", type=RANGE, help="Useful time fraction: 0.9 or 0.8:0.9:0.95."),
        click.option("--power-fraction", type=FiniteFloat(min=0.01, max=1.5),
                     help="Average accelerator power / TDP (default 0.90, NVML-measured)."),
        click.option("--power-scope", type=click.Choice(["accelerator", "server", "facility"]),
                     help="What energy and carbon count: the accelerators, + hosts, or x PUE "
                          "(default facility)."),
        click.option("--failure-rate", "failure_rate_per_device_hour",
                     type=FiniteFloat(min=0, max=0.1),
                     help="Job interruptions per device-hour (default Llama 3's 2.2e-5)."),
        click.option("--restart-minutes", type=FiniteFloat(min=0, max=1440),
                     help="Minutes from an interruption to training again (default 10)."),
        click.option("--stall-fraction", type=FiniteFloat(min=0, max=0.9),
                     help="Share of wall clock lost outside failures: stragglers, data and "
                          "evaluation pauses, hangs (default 0 / 0.015 / 0.155)."),
        click.option("--storage-gb-per-s", type=FiniteFloat(*STORAGE_GB_PER_S),
                     help="Aggregate checkpoint write bandwidth (default 0.122 GB/s per "
                          "device)."),
        click.option("--price-tier", type=TEXT,
                     help="Price tier in the profile: on_demand, spot, ..."),
        click.option("--price-per-hour", type=FiniteFloat(min=0, min_open=True),
                     help="Your own USD per device-hour."),
    ])


def split_cli_options(opts: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(shape flags, API options) from the collected click parameters (consumes ``opts``)."""
    shape = {k: opts.pop(k) for k in SHAPE_FLAGS}
    options = api_training_options({"zero": None, **opts})
    options["grid_g_co2e_per_kwh"] = options.pop("grid_g", None)
    options["price_usd_per_device_hour"] = options.pop("price_per_hour", None)
    eff = options.pop("efficiency", None)
    if eff:
        options["efficiency"] = {"low": eff[0], "expected": eff[1], "high": eff[2],
                                 "source": "set by user (--efficiency)"}
    goodput = options.pop("goodput", None)
    if goodput:
        options.update(goodput_low=goodput[0], goodput_expected=goodput[1],
                       goodput_high=goodput[2])
    return shape, options
