"""Where a training step's time goes, by the step-time model's own parts.

One profiled run of a few steps; every kernel (GPU) or ATen operator's self time (CPU) is
sorted by name into the four compute parts that planner.estimators.step_time charges:
GEMMs, attention, memory-bound work (norms, activations, residuals, copies, the loss) and
the optimizer. Names are matched by substring, so the split is approximate; the parts sum
to the busy time of the device, which is below the wall-clock step when it waits on the
host (small, launch-bound models).
"""

from __future__ import annotations

from collections.abc import Callable

PARTS = ("gemm", "attention", "memory", "optimizer")
# First match wins; lower-case substrings of CUDA kernel or ATen operator names.
_RULES = (
    ("attention", ("flash", "fmha", "attention", "attn", "sdpa")),
    ("optimizer", ("adam", "sgd", "optimizer")),
    ("gemm", ("gemm", "xmma", "cutlass", "nvjet", "sm90_", "sm80_", "cublas", "aten::mm",
              "aten::addmm", "aten::bmm", "aten::baddbmm")),
)
# CPU operators whose self time is only dispatch around their children: not counted.
_CPU_WRAPPERS = ("aten::linear", "aten::matmul", "autograd::engine", "Optimizer.zero_grad",
                 "ProfilerStep")


def part_of(name: str) -> str:
    """The step-time part a kernel or operator belongs to ('memory' when nothing matches)."""
    n = name.lower()
    return next((part for part, keys in _RULES if any(k in n for k in keys)), "memory")


def measure_parts(step: Callable[[], None], device: str, steps: int = 3) -> dict[str, float]:
    """Seconds per step spent in each part (PARTS), over ``steps`` profiled steps."""
    import torch
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    cuda = device.startswith("cuda")
    activity = ProfilerActivity.CUDA if cuda else ProfilerActivity.CPU
    with profile(activities=[activity]) as prof:
        for _ in range(steps):
            step()
        if cuda:
            torch.cuda.synchronize()
    out = dict.fromkeys(PARTS, 0.0)
    if cuda:
        for e in prof.events():
            if e.device_type == DeviceType.CUDA:
                out[part_of(e.name)] += e.device_time_total / 1e6 / steps
        return out
    for e in prof.events():
        if e.device_type != DeviceType.CPU or e.name.startswith(_CPU_WRAPPERS) \
                or "Backward" in e.name:
            continue
        part = "optimizer" if _under_optimizer(e) else part_of(e.name)
        out[part] += e.self_cpu_time_total / 1e6 / steps
    return out


def _under_optimizer(event) -> bool:
    """True when a CPU operator ran inside Optimizer.step (a for-loop AdamW's elementwise)."""
    while event is not None:
        if event.name.startswith("Optimizer.step"):
            return True
        event = event.cpu_parent
    return False
