"""The closed vocabularies, written once: precisions, optimizers, recompute policies, pipeline
schedules, ZeRO stages, objectives, and the layout degrees a search chooses.

Specs build their ``Literal`` types from these tuples, the CLI its ``click.Choice`` lists, and
the layout search its integer codes (a name's code is its index in the tuple).
"""

from __future__ import annotations

from typing import Literal

PRECISIONS = ("fp32", "tf32", "bf16", "fp16", "fp8")
OPTIMIZERS = ("adamw", "adamw_pure_bf16", "adamw_all_bf16", "adamw_8bit", "adamw_fp8",
              "sgd_momentum")
RECOMPUTE = ("none", "selective", "full")  # code = index: 0 none, 1 selective, 2 full
SCHEDULES = ("1f1b", "interleaved", "gpipe")  # code = index
ZERO_STAGES = (0, 1, 2, 3)
OBJECTIVES = ("time", "cost", "carbon")
# Training frameworks whose conventions (gradient dtype, fused kernels, overlap) the model
# follows; "generic" is planner's own convention (docs/performance-model.md). code = index.
FRAMEWORKS = ("generic", "megatron", "fsdp2", "deepspeed")
# How the elementwise work (norms, activations, RoPE, residuals, loss) runs: "fused" kernels
# (Megatron-LM, Transformer Engine, Liger, torch.compile) or "eager" PyTorch, one kernel per op.
KERNELS = ("fused", "eager")
# The dtype gradients accumulate and reduce in (Megatron --accumulate-allreduce-grads-in-fp32,
# DeepSpeed data_types.grad_accum_dtype, FSDP2 MixedPrecisionPolicy.reduce_dtype); unset:
# the framework's convention (model_state.grad_dtype_of)
GRAD_DTYPES = ("fp32", "bf16", "fp16")
# The fused attention kernel: "native", the one written for the device (FlashAttention-2 on
# Ampere and Ada; FlashAttention-3, cuDNN, Transformer Engine on Hopper), or "fa2",
# FlashAttention-2 wherever it runs (PyTorch SDPA's flash backend; the 2024 H100 stacks)
ATTENTION_KERNELS = ("native", "fa2")
OFFLOADS = ("none", "optimizer", "optimizer_params")  # ZeRO-Offload / FSDP CPUOffload; code
# The network levels a link calibration measures: inside one scale-up domain (NVLink, ICI),
# across domains (the NICs)
LINK_LEVELS = ("scale_up", "scale_out")

Precision = Literal[PRECISIONS]
Optimizer = Literal[OPTIMIZERS]
Recompute = Literal[RECOMPUTE]
Schedule = Literal[SCHEDULES]
ZeroStage = Literal[ZERO_STAGES]
Objective = Literal[OBJECTIVES]
Framework = Literal[FRAMEWORKS]
Kernels = Literal[KERNELS]
GradDtype = Literal[GRAD_DTYPES]
AttentionKernel = Literal[ATTENTION_KERNELS]
Offload = Literal[OFFLOADS]

# The layout degrees a search chooses, by their one name (the TrainingSpec / ParallelismSpec
# field, the search's column, the result's Layout field), with the CLI flag that fixes each.
DEGREE_FLAGS = {
    "tp": "--tp", "pp": "--pp", "cp": "--cp", "ep": "--ep", "zero_stage": "--zero",
    "micro_batch_size": "--micro-batch", "recompute": "--recompute",
    "virtual_stages": "--virtual-stages",
}
# Degrees the search refines around its best layouts (HSDP's shard group, FSDP's resharding).
# Like any degree, the search chooses them when they are not given; a run described by its
# layout (calibrate, measure) takes the frameworks' defaults: shard across all of dp,
# reshard after forward (Request.refined_open).
REFINED_FLAGS = {"dp_shard": "--dp-shard", "reshard_after_forward": "--reshard-after-forward"}
LAYOUT_FLAGS = {**DEGREE_FLAGS, **REFINED_FLAGS}


# Option names the CLI spells differently from the specs (click's parameter name -> the API's).
CLI_RENAMES = {"global_batch": "global_batch_size", "micro_batch": "micro_batch_size"}


def api_training_options(cli: dict) -> dict:
    """Training and layout options as click names them (``planner measure`` records them so)
    -> the API's keyword arguments: renamed, ``zero`` ("0"-"3", "fsdp") to ``zero_stage``."""
    options = {CLI_RENAMES.get(k, k): v for k, v in cli.items()}
    if "zero" in options:
        zero = options.pop("zero")
        options["zero_stage"] = None if zero is None else (3 if zero == "fsdp" else int(zero))
    return options


# The words for a layout's ZeRO shard group and kept weights: the estimate's layout line, a
# plan's runners-up and the no-fit messages (planning.no_fit.describe_layout) say them alike.
KEPT_WEIGHTS = "weights kept from forward to backward"


def shard_group(zero_stage: int, dp: int, dp_shard: int, cp: int = 1) -> str:
    """What a ZeRO shard group smaller than dp holds, as the memory and data-parallel models
    take it (model_state_bytes, data_parallel: states shard over dp_shard x cp ranks and
    replicate across dp / dp_shard): 'HSDP: shard 8 x 8 replicas' under ZeRO-3, whose weights
    shard too (FSDP HYBRID_SHARD); 'optimizer sharded over 8, 8 replicas' under ZeRO-1
    ('optimizer + gradients' under ZeRO-2), a partial distributed optimizer whose weights stay
    whole on every rank (Megatron-LM --num-distributed-optimizer-instances), so not HSDP.
    '' where the states shard over all of dp, or under ZeRO-0, which shards nothing."""
    if not zero_stage or not 0 < dp_shard < dp:
        return ""
    replicas = dp // dp_shard
    if zero_stage == 3:
        return f"HSDP: shard {dp_shard} x {replicas} replicas"
    over = f"{dp_shard} x cp {cp}" if cp > 1 else f"{dp_shard}"
    what = "optimizer + gradients" if zero_stage == 2 else "optimizer"
    return f"{what} sharded over {over}, {replicas} replicas"


def layout_extras(row: dict) -> list[str]:
    """A layout's shard group and kept weights, where they apply ('' parts left out), from
    a search row or a Layout's fields (zero_stage, dp, dp_shard, cp, reshard_after_forward)."""
    out = [shard_group(row["zero_stage"], row["dp"], row.get("dp_shard") or row["dp"],
                       row["cp"])]
    if row["zero_stage"] == 3 and not row.get("reshard_after_forward", True):
        out.append(KEPT_WEIGHTS)
    return [x for x in out if x]
