"""Data-parallel check under torchrun: gradient synchronisation bytes and time, measured on
this cluster (gloo on CPU, NCCL on GPU) and predicted by the estimators' network model.

    torchrun --nproc-per-node 2 -m planner validate --distributed [--strategy ddp|fsdp]

Every rank trains the same model on its own batch; rank 0 prints the report. The bus
bandwidth the model uses is measured first with a plain all-reduce, so the comparison checks
the volume and overlap model (what a planner can get wrong), not the network's speed.
"""

from __future__ import annotations

import contextlib
import os
import socket
import statistics
import time
from collections import Counter
from dataclasses import dataclass

from planner.estimators.model_state import state_bytes_per_param
from planner.estimators.params import count_params
from planner.estimators.data_parallel import collective_seconds
from planner.profiling.report import Quantity
from planner.specs import ModelSpec


@dataclass(frozen=True)
class DistributedResult:
    """What a distributed validation run measured against what the estimators predict."""

    quantities: list
    strategy: str
    world_size: int
    bus_bandwidth_b_per_s: float
    device: str
    ranks_per_host: tuple[int, ...] = ()  # by host name, every rank's (all_gather_object)
    device_name: str = "cpu"
    # with --calibrate: the all-reduce bus bandwidth at LINK_MESSAGE_BYTES, where it plateaus
    link_bus_bandwidth_b_per_s: float | None = None
    link_message_bytes: int = 0


LINK_MESSAGE_BYTES = 2**30  # a link calibration's message (link_calibration.MIN_MESSAGE_BYTES)


def _bus_bandwidth(dist, torch, device: str, n: int, nbytes: int = 16 * 2**20) -> float:
    """Achieved all-reduce bus bandwidth, bytes/s (nccl-tests busbw = 2(n-1)/n S / t)."""
    buf = torch.ones(nbytes // 4, device=device)
    dist.all_reduce(buf)
    times = []
    for _ in range(5):
        dist.barrier()
        t0 = time.perf_counter()
        dist.all_reduce(buf)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return 2 * (n - 1) / n * nbytes / statistics.median(times)


@contextlib.contextmanager
def _count_collective_bytes(dist):
    """Count the tensor bytes FSDP passes to all-gather and reduce-scatter."""
    counted = {"bytes": 0}
    names = ("all_gather_into_tensor", "reduce_scatter_tensor", "_all_gather_base",
             "_reduce_scatter_base", "all_gather_single", "reduce_scatter_single")
    originals = {n: getattr(dist, n) for n in names if hasattr(dist, n)}

    def wrap(fn):
        def inner(*a, **k):  # count the larger (unsharded) of the tensor arguments
            tensors = [x for x in (*a, *k.values()) if hasattr(x, "numel")]
            big = max(tensors, key=lambda x: x.numel())
            counted["bytes"] += big.numel() * big.element_size()
            return fn(*a, **k)
        return inner

    for n, fn in originals.items():
        setattr(dist, n, wrap(fn))
    try:
        yield counted
    finally:
        for n, fn in originals.items():
            setattr(dist, n, fn)


def _median_step(step, steps: int, warmup: int, sync) -> float:
    times = []
    for i in range(warmup + steps):
        sync()
        t0 = time.perf_counter()
        step()
        sync()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def run_distributed(spec: ModelSpec, strategy: str, steps: int, warmup: int, micro_batch: int,
                    seq_len: int, dtype: str, fmt: str = "table",
                    measure_link: bool = False) -> DistributedResult | None:
    """Run on every rank; returns what was measured on rank 0 and None elsewhere
    (``measure_link``: also the bus bandwidth at LINK_MESSAGE_BYTES, for a link calibration)."""
    import torch
    import torch.distributed as dist

    from planner.errors import PlannerError
    from planner.profiling.model import build_model
    from planner.profiling.probes import make_batch

    if "RANK" not in os.environ:
        raise PlannerError("--distributed must run under torchrun, e.g. `torchrun "
                           "--nproc-per-node 2 -m planner validate --distributed`")
    cuda = torch.cuda.is_available()
    rank, n = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if cuda else "cpu"
    if cuda:
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if cuda else "gloo")
    try:
        torch.manual_seed(0)
        tdtype = torch.float32 if dtype == "fp32" else torch.bfloat16
        base = build_model(spec, device, tdtype)
        tokens, targets = make_batch(spec.vocab_size, micro_batch, seq_len, device, seed=rank)
        sync = (lambda: torch.cuda.synchronize()) if cuda else (lambda: None)
        busbw = _bus_bandwidth(dist, torch, device, n)
        link = _bus_bandwidth(dist, torch, device, n, LINK_MESSAGE_BYTES) if measure_link \
            else None
        hosts: list = [None] * n
        dist.all_gather_object(hosts, socket.gethostname())  # the nodes, whatever launched us
        local_s = _median_step(_stepper(base, tokens, targets, torch), steps, warmup, sync)
        measured_bytes, dist_s = _wrapped_run(strategy, base, tokens, targets, steps, warmup,
                                              sync, dist, torch)
        quantities = _compare(spec, strategy, n, dtype, busbw, local_s, dist_s,
                              measured_bytes)
    finally:
        dist.destroy_process_group()
    if rank != 0:
        return None
    name = torch.cuda.get_device_name(device) if cuda else "cpu"
    per_host = tuple(Counter(hosts).values())
    return DistributedResult(quantities, strategy, n, busbw, device, per_host, name, link,
                             LINK_MESSAGE_BYTES if measure_link else 0)


def _stepper(model, tokens, targets, torch):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, foreach=False)

    def step():
        model(tokens, targets).backward()
        opt.step()
        opt.zero_grad(set_to_none=False)
    return step


def _wrapped_run(strategy, base, tokens, targets, steps, warmup, sync, dist, torch):
    """(gradient-sync bytes per step on one rank, median step seconds) under DDP or FSDP."""
    import copy

    model = copy.deepcopy(base)
    if strategy == "ddp":
        from torch.nn.parallel import DistributedDataParallel as DDP

        ddp = DDP(model)
        counted = {"bytes": 0}

        def hook(state, bucket):
            buf = bucket.buffer()
            counted["bytes"] += buf.numel() * buf.element_size()
            return dist.all_reduce(buf.div_(dist.get_world_size()), async_op=True) \
                .get_future().then(lambda f: f.value()[0])

        ddp.register_comm_hook(None, hook)
        step = _stepper(ddp, tokens, targets, torch)
        seconds = _median_step(step, steps, warmup, sync)
        counted["bytes"] = 0
        step()
        return counted["bytes"], seconds
    from torch.distributed.fsdp import fully_shard  # FSDP2: per-block units, works on CPU

    for block in model.blocks:
        fully_shard(block)
    fsdp = fully_shard(model, reshard_after_forward=True)  # ZeRO-3: re-gather in backward
    step = _stepper(fsdp, tokens, targets, torch)
    seconds = _median_step(step, steps, warmup, sync)
    with _count_collective_bytes(dist) as counted:
        step()
    return counted["bytes"], seconds


def _compare(spec, strategy, n, dtype, busbw, local_s, dist_s, measured_bytes):
    """Predicted vs measured sync bytes and exposed sync time."""
    params = count_params(spec).total
    w_b, g_b, _ = state_bytes_per_param("adamw" if dtype == "fp32" else "adamw_all_bf16",
                                        dtype)
    if strategy == "ddp":  # one all-reduce of the gradients (ZeRO section 7: 2 Psi volume)
        pred_bytes = params * g_b
        total = collective_seconds(pred_bytes, 2 * (n - 1) / n, n, busbw, 0.0, 0)
        what = "DDP gradient all-reduce (bucket buffers)"
    else:  # ZeRO-3: all-gather params in forward and backward + reduce-scatter grads
        pred_bytes = params * (2 * w_b + g_b)
        total = collective_seconds(pred_bytes, (n - 1) / n, n, busbw, 0.0, 0)
        what = "FSDP all-gather + reduce-scatter tensors"
    # the step-time model's overlap: per layer, the first collective and each layer's excess
    # over its compute are exposed (estimators/data_parallel.py, data_parallel)
    layers = spec.num_layers
    window = (2 / 3) * local_s if strategy == "ddp" else local_s
    per_comm, per_compute = total / layers, window / layers
    exposed = min(total, per_comm + layers * max(0.0, per_comm - per_compute))
    return [
        Quantity("sync_bytes_per_step", float(pred_bytes), float(measured_bytes), "bytes",
                 what, 0.0),
        Quantity("sync_time_s", exposed, max(0.0, dist_s - local_s), "s",
                 f"median {strategy} step minus median single-process step (exposed "
                 f"synchronisation); model: {total:.4f} s of traffic at the measured bus "
                 f"bandwidth, overlapped layer by layer with compute", 50.0),
        Quantity("step_time_s", local_s + exposed, dist_s, "s",
                 f"median {strategy} step on {n} ranks", 25.0),
    ]
