"""Collectives on a hierarchical network, the data-parallel terms of a step, and the
gradient-accumulation pass (docs/performance-model.md, docs/formulas.md §4.2-4.3).

Per parameter group (dense weights over dp x cp ranks; routed experts over dp x cp / ep) the
data-parallel collectives follow each ZeRO stage and framework convention, each prefetched
behind the neighbouring layer's compute; step_time.py adds them to the step. Branch-free:
numbers or numpy arrays of layouts.
"""

from __future__ import annotations

from typing import Any

from planner.estimators.model_state import (
    framework_state_bytes, keeps_unsharded_across_micro_batches, model_state_bytes,
)
from planner.estimators.vec import Degrees, vmax, vmin
from planner.specs.model import ModelSpec
from planner.specs.training import TrainingSpec


def collective_seconds(bytes_: Any, factor: Any, n: Any, bw: Any, latency: Any, hops: Any) -> Any:
    """Time of one collective: factor * bytes / bandwidth + hops * latency (0 if n == 1)."""
    return (factor * bytes_ / bw + hops * latency) * (n > 1)


def group_link(stride: Any, size: Any, domain: float, up: float, out: float,
               lat_up: float, lat_out: float) -> tuple[Any, Any]:
    """(bus bandwidth per rank, per-hop latency) of a collective over ``size`` ranks spaced
    ``stride`` apart (ranks ordered tp, cp, dp, pp as in Megatron).

    Inside one scale-up domain: the scale-up link. Across domains the collective is
    hierarchical: NCCL runs one ring (channel) per NIC rail, so a group with k ranks in each
    domain moves its bytes over k NICs at once and its bus bandwidth is min(scale-up,
    k x per-device scale-out); k = 1 when each domain holds one rank (a TPU pod's ranks
    talk over ICI inside the pod and over DCN across pods). docs/performance-model.md.
    """
    inside = stride * size <= domain
    per_domain = vmax(1, vmin(size, domain // stride))
    across = vmin(up, per_domain * out)
    return across + (up - across) * inside, lat_out + (lat_up - lat_out) * inside


def _overlapped(comm_per_layer: Any, compute_per_layer: Any, layers: Any) -> Any:
    """Exposed time of one collective per layer prefetched behind the neighbouring layer's
    compute (FSDP/ZeRO-3 all-gathers, bucketed gradient reductions): the first (or last)
    layer's collective cannot hide, and each layer's excess over its compute shows."""
    return comm_per_layer * (layers > 0) + layers * vmax(0, comm_per_layer - compute_per_layer)


def accumulation_bytes(training: TrainingSpec, lay: Degrees, grad_dense: Any,
                       grad_expert: Any) -> Any:
    """HBM bytes of one unfused gradient-accumulation pass on a device: read the new and the
    accumulated gradients and write the sum, 3 x the gradient bytes the device holds, as the
    memory model holds them (model_state_bytes: sharded under ZeRO 2-3, which reduce-scatter
    every micro-batch; whole under FSDP2 pipelining, which keeps them unsharded)."""
    stage = lay.zero_stage * (1 - keeps_unsharded_across_micro_batches(lay))
    shards, fw = lay.shard * lay.cp, lay.framework
    opt, prec = training.optimizer, training.precision
    gd = training.grad_dtype
    _, dense, _ = model_state_bytes(grad_dense, opt, prec, stage, shards, fw, gd)
    _, expert, _ = model_state_bytes(grad_expert, opt, prec, stage, vmax(1, shards / lay.ep), fw,
                                     gd)
    return 3 * (dense + expert)


def data_parallel(model: ModelSpec, training: TrainingSpec, lay: Degrees, local: tuple,
                   compute_mb: Any, per_stage: Any, domain: float, up: float, out: float,
                   lat: tuple[float, float]) -> tuple[Any, Any]:
    """(total, exposed) seconds per step of the data-parallel collectives. ``local``: the
    (owned, trainable) parameters per device of the dense and of the routed-expert group.

    Per parameter group (dense weights over dp x cp ranks; routed experts over dp x cp / ep):
      ZeRO 0      all-reduce of the gradients, once per step
      ZeRO 1      reduce-scatter of the gradients once per step, all-gather of the updated
                  parameters once per step (ZeRO §5; Megatron's distributed optimizer)
      ZeRO 2      the same, but the gradients reduce-scatter every micro-batch, since only
                  their shard is kept (DeepSpeed stage 2's per-backward reduce hooks); so does
                  any stage with offload, whose gradient shards go to the host each
                  micro-batch (ZeRO-Offload)
      ZeRO 3      all-gather of each layer's parameters before its forward and (when
                  reshard_after_forward) again before its backward, reduce-scatter of its
                  gradients, every micro-batch (ZeRO §5.3; FSDP2)
      HSDP        the above inside shard groups of dp_shard ranks, plus an all-reduce of
                  the gradient shards across the dp / dp_shard replicas once per step
                  (every micro-batch under --framework fsdp2, its default)
    Each collective is issued per layer and prefetched behind the neighbouring layer's
    compute (FSDP's forward/backward prefetch; bucketed gradient reduction in the last
    micro-batch's backward, in every one for ZeRO-2; the parameter all-gather in the next
    step's first forward), so
    only the first layer's and each layer's excess over its compute are exposed
    (docs/performance-model.md).
    """
    # gradients reduce in their dtype (--grad-dtype, else the framework's: fp32 under
    # Megatron's bf16 main_grad and FSDP2's reduce_dtype); ZeRO-3 gathers weights in the
    # compute dtype
    _, g_b, _, w_b = framework_state_bytes(training.optimizer, training.precision,
                                           lay.framework, training.grad_dtype)
    t, c, e, z = lay.tp, lay.cp, lay.ep, lay.zero_stage
    # FSDP2 under pipelining keeps layers gathered and gradients unsharded across the step's
    # micro-batches: its ZeRO-3 traffic happens once per step
    keep = keeps_unsharded_across_micro_batches(lay)
    m = lay.micro_batches + (1 - lay.micro_batches) * keep
    fwd_frac = 1 / (3 + (lay.recompute == 2))  # forward share of a micro-batch's compute
    f_layer = compute_mb * fwd_frac / per_stage
    b_layer = compute_mb * (1 - fwd_frac) / per_stage
    # fine-tuning: gradients (and ZeRO 1-2's updated parameters) of trainable ones only
    (dense_local, dense_trained), (expert_local, expert_trained) = local
    shard, replicas = lay.shard, lay.dp / lay.shard
    reshard = lay.reshard_after_forward
    total = exposed = 0.0
    groups = [(dense_local, dense_trained, shard * c, t)]
    if model.moe:  # routed experts: their own shard group, dp x cp / ep ranks
        groups.append((expert_local, expert_trained, vmax(1, shard * c / e), t * e))
    for local, train, n_s, stride in groups:
        layer_bytes, train_bytes = local / per_stage, train / per_stage
        bw, la = group_link(stride, n_s, domain, up, out, *lat)
        frac = (n_s - 1) / n_s
        gather = collective_seconds(layer_bytes * w_b, frac, n_s, bw, la, n_s - 1)
        updated = collective_seconds(train_bytes * w_b, frac, n_s, bw, la, n_s - 1)
        reduce = collective_seconds(train_bytes * g_b, frac * (1 + (z == 0)), n_s, bw, la,
                                    (n_s - 1) * (1 + (z == 0)))
        r_bw, r_la = group_link(stride * n_s, replicas, domain, up, out, *lat)
        across = collective_seconds(train_bytes * g_b / n_s, 2 * (replicas - 1) / replicas,
                                    replicas, r_bw, r_la, 2 * (replicas - 1)) * (z >= 1)
        z3 = z == 3
        # ZeRO 3: every micro-batch, gathers in forward and backward and the reduce-scatter
        fwd_comm = gather
        bwd_comm = gather * reshard + reduce
        z3_total = m * per_stage * (fwd_comm + bwd_comm)
        z3_exposed = m * (_overlapped(fwd_comm, f_layer, per_stage) +
                          _overlapped(bwd_comm, b_layer, per_stage))
        # ZeRO 0-1: one reduction in the last backward (ZeRO-2: in every backward), one
        # gather in the next forward
        reductions = 1 + (m - 1) * vmax(1 * (z == 2), 1 * (lay.offload >= 1))
        low_total = per_stage * (reductions * reduce + updated * (z >= 1))
        low_exposed = reductions * _overlapped(reduce, b_layer, per_stage) + \
            _overlapped(updated, f_layer, per_stage) * (z >= 1)
        # HSDP's replica all-reduce: once per step (the shards accumulate, FSDP2's
        # set_requires_all_reduce(False) until the last micro-batch), but every micro-batch
        # under --framework fsdp2, whose default reduce-scatters and all-reduces each backward
        # (pytorch#126166); under pipelining its schedules sync once per step
        across_n = 1 + (lay.micro_batches - 1) * (lay.framework == 2) * (z >= 2) * (lay.pp == 1)
        across_total = per_stage * across * across_n
        total = total + z3_total + (low_total - z3_total) * (1 - z3) + across_total
        # The replica all-reduce follows each layer's gradient reduce-scatter in the same
        # backward: on the same link (both across the NICs, the shard group leaving the
        # scale-up domain; or both inside it) they hide behind that layer's compute
        # together, not each behind all of it
        shared = vmax(1 * (stride * n_s > domain), 1 * (stride * n_s * replicas <= domain)) * \
            (replicas > 1)
        own = z3 * bwd_comm + (1 - z3) * reduce
        with_across = _overlapped(own + across, b_layer, per_stage) - \
            _overlapped(own, b_layer, per_stage)
        exposed = exposed + z3_exposed + (low_exposed - z3_exposed) * (1 - z3) + \
            across_n * (shared * with_across + (1 - shared) * _overlapped(across, b_layer,
                                                                          per_stage))
    return total, total + (exposed - total) * lay.dp_comm_overlap
