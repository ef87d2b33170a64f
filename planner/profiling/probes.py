"""Measurements on a real model: FLOPs, saved activations, step time, peak memory, CPU peak."""

from __future__ import annotations

import contextlib
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode


def make_batch(vocab: int, batch: int, seq: int, device: str, seed: int = 0):
    g = torch.Generator(device="cpu").manual_seed(seed)
    tokens = torch.randint(0, vocab, (batch, seq + 1), generator=g).to(device)
    return tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous()


@dataclass(frozen=True)
class FlopCount:
    """FLOPs of one forward + backward, and whether a fused attention backward was counted
    (its formulas include the QK^T recompute, which the MATH backend's backward does not do)."""

    total: int
    fused_attention_backward: bool


def count_flops(model, tokens, targets) -> FlopCount:
    """FLOPs of one forward + backward, counted by FlopCounterMode.

    On a CPU, attention runs through the MATH SDPA backend here: the CPU's fused kernel is
    not in the counter's registry and would count 0 (docs/formulas.md §2.9); the MATH backend
    decomposes into counted bmm's. On a GPU the flash / memory-efficient / cuDNN kernels are
    in the registry (each counted as the full s x s products, as MATH counts them) and keep
    the s^2 scores out of memory; GQA's K/V are repeated to every query head for the count
    (same FLOPs), since those formulas reject fewer K/V heads than query heads. A shape no
    fused kernel takes falls back to MATH, and ``fused_attention_backward`` says which ran.
    Timing runs use the default kernel and GQA as it is.
    """
    from planner.profiling.model import expanded_kv

    backends, expand = [SDPBackend.MATH], contextlib.nullcontext()
    if tokens.is_cuda:  # the GPU's fused kernels are in the counter's registry: no s^2 buffer
        backends = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION,
                    SDPBackend.CUDNN_ATTENTION, SDPBackend.MATH]
        expand = expanded_kv()
    with FlopCounterMode(display=False) as counter, sdpa_kernel(backends), expand:
        model(tokens, targets).backward()
    model.zero_grad(set_to_none=True)
    ops = {str(op) for op in counter.get_flop_counts().get("Global", {})}
    fused = any("_scaled_dot_product_" in op and op.endswith("_backward") for op in ops)
    return FlopCount(int(counter.get_total_flops()), fused)


def saved_activation_bytes(model, tokens, targets) -> int:
    """Bytes autograd saves for backward in one forward, deduplicated by storage; weights,
    integer inputs (token ids) and other non-activation tensors excluded."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor):
        st = t.untyped_storage()
        ptr = st.data_ptr()
        if t.is_floating_point() and ptr not in params and t.numel() > 1:
            seen[ptr] = st.nbytes()
        # A detached alias keeps the storage alive for the forward (so no address is reused
        # and double-counted) without the reference cycle that returning an op's own output
        # would make (output -> grad_fn -> saved output), which leaked the whole graph.
        return t.detach()

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = model(tokens, targets)
    del loss
    return sum(seen.values())


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


@dataclass
class StepTimes:
    times_s: list[float]  # measured steps (warm-up excluded)
    warmup: int
    interrupted: bool = False

    @property
    def median_s(self) -> float:
        return statistics.median(self.times_s)

    @property
    def spread_pct(self) -> float:
        """Interquartile range relative to the median, percent (0 for < 4 samples)."""
        if len(self.times_s) < 4:
            return 0.0
        q = statistics.quantiles(self.times_s, n=4)
        return (q[2] - q[0]) / self.median_s * 100


def time_steps(step: Callable[[], None], steps: int, warmup: int, device: str,
               on_step: Callable[[int], None] | None = None) -> StepTimes:
    """Run warm-up + timed steps, synchronising the device around each timed step.
    Ctrl-C stops early and returns the steps measured so far."""
    out = StepTimes([], warmup)
    try:
        for i in range(warmup + steps):
            _sync(device)
            t0 = time.perf_counter()
            step()
            _sync(device)
            if i >= warmup:
                out.times_s.append(time.perf_counter() - t0)
            if on_step:
                on_step(i + 1)
    except KeyboardInterrupt:
        out.interrupted = True
    return out


def tensor_bytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors if torch.is_tensor(t))


def peak_step_memory(step: Callable[[], None], model, optimizer, device: str) -> tuple[int, str]:
    """(peak bytes during one training step, method). Resident states included."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.empty_cache()  # the probes' cached blocks would count as reserved
        torch.cuda.reset_peak_memory_stats()
        step()
        torch.cuda.synchronize()
        return int(torch.cuda.max_memory_allocated()), "torch.cuda.max_memory_allocated"
    from torch.profiler import ProfilerActivity, profile

    resident = tensor_bytes(model.parameters())
    resident += tensor_bytes(p.grad for p in model.parameters() if p.grad is not None)
    resident += tensor_bytes(t for s in optimizer.state.values() for t in s.values())
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    events = sorted((e for e in prof.events() if e.self_cpu_memory_usage),
                    key=lambda e: e.time_range.start)
    level = peak = 0
    for e in events:
        level += e.self_cpu_memory_usage
        peak = max(peak, level)
    return resident + peak, "torch profiler memory events + resident states"


def device_memory_peak() -> tuple[int, str]:
    """Peak device memory during the last reset window: the allocator's peak reservation
    plus what CUDA holds outside the allocator (context, cuBLAS and library workspaces),
    read as the device's used memory minus the reservation now. Device-wide: memory other
    processes hold on the same GPU counts too."""
    torch.cuda.synchronize()
    free, total = torch.cuda.mem_get_info()
    outside = (total - free) - torch.cuda.memory_reserved()
    return (int(torch.cuda.max_memory_reserved() + max(0, outside)),
            "torch.cuda.max_memory_reserved + (device used - reserved): context, workspaces")


def cpu_matmul_peak(dtype=torch.float32, n: int = 1024, seconds: float = 0.6) -> float:
    """Achieved matmul FLOP/s of this CPU (best of repeated n x n x n products)."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    torch.mm(a, b)
    best, t_end = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < t_end:
        t0 = time.perf_counter()
        torch.mm(a, b)
        best = max(best, 2 * n**3 / (time.perf_counter() - t0))
    return best


def cpu_memory_bandwidth(nbytes: int = 256 * 2**20) -> float:
    """Achieved copy bandwidth (read + write bytes per second) of this machine."""
    src = torch.empty(nbytes // 4, dtype=torch.float32).fill_(1.0)
    dst = torch.empty_like(src)
    best = 0.0
    for _ in range(5):
        t0 = time.perf_counter()
        dst.copy_(src)
        best = max(best, 2 * nbytes / (time.perf_counter() - t0))
    return best


def other_cpu_load() -> float:
    """CPU cores busy with other processes (1-minute load average minus our threads)."""
    load = os.getloadavg()[0]
    return max(0.0, load - torch.get_num_threads())
