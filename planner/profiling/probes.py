"""Measurements on a real model: FLOPs, saved activations, step time, peak memory, CPU peak."""

from __future__ import annotations

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


def count_flops(model, tokens, targets) -> int:
    """FLOPs of one forward + backward, counted by FlopCounterMode.

    Attention runs through the MATH SDPA backend here: on CPU the default fused kernel is
    not in the counter's registry and would count 0 (formulas.md §2.9); the MATH backend
    decomposes into counted bmm's. Timing runs use the default kernel.
    """
    with FlopCounterMode(display=False) as counter, sdpa_kernel(SDPBackend.MATH):
        model(tokens, targets).backward()
    model.zero_grad(set_to_none=True)
    return int(counter.get_total_flops())


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
        return t

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
