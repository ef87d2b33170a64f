"""Model-state bytes per device: weights, gradients and optimizer state per parameter under
ZeRO's accounting (Rajbhandari et al. 2020 §3) and each framework's convention, their ZeRO
sharding, and a pipeline stage's states with its FSDP buffers and offload (docs/formulas.md
§3.1-3.2). Branch-free like memory.py: a number or an array of layouts."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from planner.estimators.vec import Degrees, vmax
from planner.specs.training import TrainingSpec

# (weights, gradients, optimizer state) bytes per parameter, docs/formulas.md §3.1.
_STATE_BYTES = {
    "adamw": (2, 2, 12),  # bf16/fp16 weights + grads; fp32 master, m, v (ZeRO K=12)
    "adamw_pure_bf16": (2, 2, 8),  # bf16 weights, fp32 m and v, no master copy
    "adamw_all_bf16": (2, 2, 4),  # weights, grads, m, v all bf16
    "adamw_8bit": (2, 2, 6),  # fp32 master + int8 m, v (Dettmers et al. 2022)
    "adamw_fp8": (1, 4, 8),  # DeepSeek-V3 §3.3: fp8 weights, fp32 grads+master, bf16 m, v
    "sgd_momentum": (2, 2, 8),  # fp32 master + fp32 momentum
}
_STATE_BYTES_FP32 = {"adamw": (4, 4, 8), "sgd_momentum": (4, 4, 4)}


def state_bytes_per_param(optimizer: str, precision: str) -> tuple[int, int, int]:
    """(weights, gradients, optimizer) bytes per parameter for a recipe (docs/formulas.md §3.1)."""
    if precision in ("fp32", "tf32") and optimizer in _STATE_BYTES_FP32:
        return _STATE_BYTES_FP32[optimizer]
    return _STATE_BYTES[optimizer]


# Recipes whose optimizer state holds an fp32 master copy of the weights (4 of its bytes).
_HAS_MASTER = ("adamw", "adamw_8bit", "adamw_fp8", "sgd_momentum")


def framework_state_bytes(optimizer: str, precision: str, framework: Any = 0,
                          grad_dtype: str | None = None) -> tuple[Any, Any, Any, Any]:
    """(weights, gradients, optimizer, gathered) bytes per parameter under a framework's
    convention (code = index in vocab.FRAMEWORKS; a number or an array). ``gathered`` is
    the dtype FSDP/ZeRO-3 all-gathers parameters in for compute. The gradient bytes are
    also those the data-parallel collectives reduce and an unfused accumulation moves.

    - generic and deepspeed: ZeRO's accounting (Rajbhandari et al. 2020 §3: fp16/bf16
      weights and gradients, fp32 master, m, v in the optimizer; DeepSpeed's own convention).
    - megatron: with --bf16 the gradients accumulate and reduce in fp32 ``main_grad``
      buffers (accumulate_allreduce_grads_in_fp32 is forced on with bf16); with --fp16 the
      fp32 main gradients sit in the optimizer's shard. Megatron-LM's distributed-optimizer
      docs: bf16/fp32 6 + 12/d, fp16/fp16 4 + 16/d bytes per parameter.
    - fsdp2 (torchtitan): the sharded parameters are the fp32 masters and the sharded
      gradients are fp32 (MixedPrecisionPolicy param_dtype=bf16, reduce_dtype=fp32), so the
      master copy leaves the optimizer state; the unsharded compute copy is bf16.

    ``grad_dtype`` ("fp32", "bf16", "fp16"; None: the convention above) sets the gradient
    dtype instead: fp32 is Megatron's --accumulate-allreduce-grads-in-fp32 (fp16 weights,
    fp32 main_grad: 2 + 4 + 12 B/param) and DeepSpeed's grad_accum_dtype fp32; a 16-bit one
    under Megatron keeps 16-bit main_grad buffers and, with an fp32 master, fp32 main
    gradients in the optimizer (as --fp16 does). FSDP2's sharded gradients take its sharded
    parameters' dtype whatever is given (grad_dtype_error refuses any other).
    """
    if type(framework) is int:  # one layout: a handful of recipes recur
        return _framework_state_bytes_at(optimizer, precision, framework, grad_dtype)
    return _framework_state_bytes(optimizer, precision, framework, grad_dtype)


@lru_cache(maxsize=64)
def _framework_state_bytes_at(optimizer: str, precision: str, framework: int,
                              grad_dtype: str | None) -> tuple:
    return _framework_state_bytes(optimizer, precision, framework, grad_dtype)


def _framework_state_bytes(optimizer: str, precision: str, framework: Any,
                           grad_dtype: str | None = None) -> tuple:
    w, g, o = state_bytes_per_param(optimizer, precision)
    mixed, meg, fs = precision not in ("fp32", "tf32"), framework == 1, framework == 2
    master = optimizer in _HAS_MASTER
    # FSDP2: the sharded gradients take the sharded parameters' dtype (fp32 masters, or the
    # recipe's 16-bit weights); a given dtype is refused unless it is that one (resolve)
    fs_w, fs_g, fs_o = (4, 4, o - 4) if mixed and master else (w, g, o)
    if grad_dtype is not None:
        g = 4 if grad_dtype == "fp32" else 2
    # Megatron: fp32 main_grad, unless the gradients are 16-bit (--fp16, a given 16-bit dtype):
    # then the optimizer holds fp32 main gradients beside the fp32 master
    meg_g = g if grad_dtype is not None or (precision == "fp16" and g == 2) else (
        4 if mixed else g)
    meg_o = o + 4 * (meg_g == 2 and mixed and master)
    gathered = 2 if mixed else 4
    return (w + (fs_w - w) * fs, g + (meg_g - g) * meg + (fs_g - g) * fs,
            o + (meg_o - o) * meg + (fs_o - o) * fs, w + (gathered - w) * fs)


def grad_dtype_of(optimizer: str, precision: str, framework: int,
                  grad_dtype: str | None = None) -> str:
    """The dtype gradients accumulate and reduce in: the one given, else the framework's
    convention (framework_state_bytes)."""
    g = framework_state_bytes(optimizer, precision, framework, grad_dtype)[1]
    if g == 4:
        return "fp32"
    return grad_dtype or ("fp16" if precision == "fp16" else "bf16")


def grad_dtype_error(optimizer: str, precision: str, framework: int,
                     grad_dtype: str | None) -> str | None:
    """Why ``grad_dtype`` cannot be this recipe's gradient dtype (None: it can): fp32, or the
    16-bit dtype the recipe computes in (bf16 under fp8; bf16 for the recipes that keep bf16
    gradients under fp32 weights). FSDP2 as torchtitan runs it has one: its sharded
    parameters' dtype (torchtitan's mixed_precision_reduce takes float32 only)."""
    if grad_dtype is None:
        return None
    if framework == 2:
        own = grad_dtype_of(optimizer, precision, 2)
        if grad_dtype != own:
            return (f"--grad-dtype {grad_dtype} with --framework fsdp2: FSDP2 as torchtitan "
                    f"runs it keeps {own} gradients for --optimizer {optimizer} at --precision "
                    f"{precision} (its sharded parameters' dtype; torchtitan reduces in fp32 "
                    f"only); use --grad-dtype {own} or leave it unset (grad_dtype, framework "
                    "in the Python API)")
        return None
    own = grad_dtype_of(optimizer, precision, 0)  # the recipe's, as ZeRO's accounting has it
    valid = ["fp32"] + ([] if own == "fp32" else [own]) + \
        ([precision] if precision in ("bf16", "fp16") and precision != own else [])
    if grad_dtype in valid:
        return None
    return (f"--grad-dtype {grad_dtype} with --precision {precision}: gradients accumulate in "
            f"fp32 or in the compute dtype; valid --grad-dtype: {' or '.join(valid)} "
            "(grad_dtype, precision in the Python API)")


def model_state_bytes(
    num_params: Any, optimizer: str, precision: str, zero_stage: Any, shards: Any,
    framework: Any = 0, grad_dtype: str | None = None,
) -> tuple[Any, Any, Any]:
    """(weights, gradients, optimizer) bytes per device for ``num_params`` local parameters.

    ZeRO (Rajbhandari et al. 2020 §3): stage 1 shards optimizer state over ``shards``
    data-parallel ranks, stage 2 also gradients, stage 3 also weights. ``framework``: the
    bytes per parameter of that framework's convention and gradient dtype
    (framework_state_bytes).
    """
    w, g, o, _ = framework_state_bytes(optimizer, precision, framework, grad_dtype)

    def per(bytes_per: int, from_stage: int) -> Any:
        sharded = zero_stage >= from_stage
        return bytes_per * num_params / (1 + (shards - 1) * sharded)

    return per(w, 3), per(g, 2), per(o, 1)


def keeps_unsharded_across_micro_batches(lay: Degrees) -> Any:
    """1 where FSDP2 under torch.distributed.pipelining (torchtitan, pp > 1) keeps every
    layer gathered and its gradients unsharded until the step's last micro-batch (the
    schedules call set_reshard_after_backward(False), set_requires_gradient_sync(False));
    0 where parameters are gathered and gradients reduce-scattered every micro-batch."""
    shards = lay.shard * lay.cp
    return 1 * (lay.framework == 2) * (lay.pp > 1) * (lay.micro_batches > 1) * \
        (lay.zero_stage >= 2) * (shards > 1)


def stage_state_terms(training: TrainingSpec, lay: Degrees, shared: Any, routed: Any,
                 largest: Any) -> tuple[Any, Any, Any, Any]:
    """(weights, gradients, optimizer, FSDP buffers) bytes on a stage holding ``shared``
    non-expert and ``routed`` expert parameters per device; ``largest``: its largest layer.

    HSDP: the states shard over the shard group (dp_shard x cp), not all of dp x cp.
    FSDP buffers: the gathered layer and the prefetched next one (2 x largest) at the gather
    dtype; without reshard_after_forward every layer of the stage stays gathered from forward
    to backward, under FSDP2 pipelining also with unsharded fp32 gradients (above).
    Offload (ZeRO-Offload, Ren et al. 2021 §4.1; FSDP CPUOffload): optimizer states live in
    host memory and gradients go there as each layer's are reduced (one layer's gradients
    stay on the device as the bucket); "optimizer_params" also keeps the parameters there
    and streams each layer's in (2 x largest at the gather dtype, as ZeRO-3).
    """
    opt, prec, z, fw = training.optimizer, training.precision, lay.zero_stage, lay.framework
    gd = training.grad_dtype
    shards = lay.shard * lay.cp
    dense_states = model_state_bytes(shared, opt, prec, z, shards, fw, gd)
    expert_states = model_state_bytes(routed, opt, prec, z, vmax(1, shards / lay.ep), fw, gd)
    weights, grads, optim = (a + b for a, b in zip(dense_states, expert_states))
    _, g_bytes, _, gathered_bytes = framework_state_bytes(opt, prec, fw, gd)
    accumulate = keeps_unsharded_across_micro_batches(lay)
    all_layers = vmax(1 - lay.reshard_after_forward, accumulate)
    on_host = 1 * (lay.offload >= 1)
    params_on_host = 1 * (lay.offload == 2)
    gathers = vmax(1 * (z == 3) * (shards > 1), params_on_host)
    fsdp = gathered_bytes * vmax(2 * largest, all_layers * (shared + routed)) * gathers
    fsdp = fsdp + largest * g_bytes * on_host
    grads = (grads + g_bytes * (shared + routed) * accumulate) * (1 - on_host)
    return weights * (1 - params_on_host), grads, optim * (1 - on_host), fsdp
