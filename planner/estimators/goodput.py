"""Whole-run goodput: interruptions, checkpoints and restarts (docs/formulas.md §7.2).

A synchronous job stops whenever any of its devices (or their hosts, links or software) fails,
so its interruptions arrive at ``rate x devices`` per hour. Each one costs a restart (detect,
reschedule, reload) plus the work done since the last checkpoint; checkpointing every
``interval`` seconds stalls the job for the write. Young (1974) and Daly (2006) give the
interval that balances the two. Goodput = useful time / wall-clock time.

Every function works on plain numbers and on numpy arrays of device counts alike (the
layout search ranks whole arrays); nothing here imports numpy.
"""

from __future__ import annotations

from planner.results import frozen
from planner.units import SECONDS_PER_HOUR

# Llama 3 405B pre-training, Dubey et al. 2024 §3.3.4 and Table 5: 466 job interruptions
# (47 planned, 419 unexpected) in a 54-day snapshot on 16,384 H100 GPUs.
LLAMA3_DEVICE_HOURS = 16_384 * 54 * 24  # 21.2M device-hours in the snapshot
LLAMA3_CAUSES = {  # Table 5: unexpected interruptions by root cause, and their kind
    "faulty GPU": (148, "hardware"), "GPU HBM3 memory": (72, "hardware"),
    "software bug": (54, "software"), "network switch/cable": (35, "network"),
    "host maintenance": (32, "hardware"), "GPU SRAM memory": (19, "hardware"),
    "GPU system processor": (17, "hardware"), "NIC": (7, "network"),
    "NCCL watchdog timeouts": (7, "software"), "silent data corruption": (6, "hardware"),
    "GPU thermal interface and sensor": (6, "hardware"), "SSD": (3, "hardware"),
    "power supply": (3, "hardware"), "server chassis": (2, "hardware"),
    "IO expansion board": (2, "hardware"), "dependency": (2, "software"),
    "CPU": (2, "hardware"), "system memory": (2, "hardware"),
}
LLAMA3_PLANNED = 47  # automated maintenance, firmware and configuration updates
KINDS = ("hardware", "software", "network", "planned")


def llama3_rates_per_device_hour() -> dict[str, float]:
    """Interruptions per device-hour by kind in Llama 3's snapshot (hardware 314, software 63,
    network 42, planned 47 of 466)."""
    counts = dict.fromkeys(KINDS, 0)
    for n, kind in LLAMA3_CAUSES.values():
        counts[kind] += n
    counts["planned"] = LLAMA3_PLANNED
    return {k: v / LLAMA3_DEVICE_HOURS for k, v in counts.items()}


RATES = llama3_rates_per_device_hour()
RATE_EXPECTED = sum(RATES.values())  # 2.19e-5 per device-hour: one per 45.6K device-hours
# The range: a mature fleet at half Llama 3's rate (an assumption: no published large fleet
# lower was found) to MPT-7B's 4 hardware failures in 9.5 days on 440 A100 (MosaicML 2023:
# 4 / 100,320 device-hours = 4.0e-5). OPT-175B's logbook (992 A100, 2021-22; a mean of 7.5 h
# between interruptions = 1.3e-4) is an early, troubled fleet; give it with --failure-rate.
RATE_CASES = (0.5 * RATE_EXPECTED, RATE_EXPECTED, 4 / (440 * 9.5 * 24))
RATE_SOURCE = (
    "interruptions per device-hour: Llama 3 405B had 466 in 54 days on 16,384 H100 (419 "
    "unexpected: hardware 314, software 63, network 42; 47 planned; Dubey et al. 2024 §3.3.4, "
    "Table 5) = 2.19e-5; low half that (assumed mature fleet), high MPT-7B's 4 failures in "
    "9.5 days on 440 A100 (MosaicML 2023) = 4.0e-5")

# From interruption to training again at the last checkpoint (detection, rescheduling, process
# start, checkpoint load, warm-up), seconds. Llama 3 does not publish it; its >90% effective
# training time with 466 interruptions in 54 days caps the whole loss per interruption at
# 0.1 x 54 x 24 h / 466 = 17 min, of which restart is the larger part.
RESTART_S_CASES = (5 * 60.0, 10 * 60.0, 20 * 60.0)
RESTART_SOURCE = (
    "assumed 5 / 10 / 20 min from failure to training again; bounded by Llama 3's >90% "
    "effective training time with 466 interruptions in 54 days (<= 17 min lost each, "
    "Dubey et al. 2024 §3.3.4)")

# Storage write bandwidth per device: Llama 3's Tectonic store sustained 2 TB/s for 16K GPUs
# (Dubey et al. 2024 §3.3.1: "2 TB/s of sustained throughput and 7 TB/s peak").
STORAGE_BYTES_PER_S_PER_DEVICE = 2e12 / 16_384
STORAGE_SOURCE = (
    "2 TB/s sustained for 16,384 GPUs (Llama 3's Tectonic store, Dubey et al. 2024 §3.3.1) "
    "= 0.122 GB/s per device, scaled with the device count; the write stalls training "
    "(no asynchronous checkpointing assumed)")
# Spot / preemptible capacity adds preemptions. AWS's Spot Instance Advisor buckets instance
# types by the share interrupted in a month (<5%, 5-10%, 10-15%, 15-20%, >20%); large GPU
# instances usually sit in the top one. Per 8-GPU instance-month (730 h): 5% / 20% / 40%.
SPOT_PREEMPTION_CASES = tuple(f / (730 * 8) for f in (0.05, 0.20, 0.40))
SPOT_SOURCE = (
    "spot preemptions per device-hour: 5% / 20% / 40% of 8-GPU instances interrupted per "
    "month (AWS Spot Instance Advisor's buckets; GPU instances usually >20%), each costing a "
    "restart and the work since the last checkpoint")
MIN_GOODPUT = 0.05  # a floor so that a hopeless case stays a (very large) finite number


def _at_least(x, floor):
    """max(x, floor) for numbers and arrays alike (exact: no x + (floor - x) rounding)."""
    return x * (x >= floor) + floor * (x < floor)


def checkpoint_bytes(num_params: float, weight_bytes: float, optimizer_bytes: float) -> float:
    """Bytes of one full checkpoint: every parameter's weights plus optimizer state (one copy,
    whatever the sharding; gradients and activations are not saved)."""
    return num_params * (weight_bytes + optimizer_bytes)


def checkpoint_write_s(ckpt_bytes: float, devices, storage_bytes_per_s=None):
    """Seconds to write one checkpoint: bytes / aggregate storage bandwidth (the user's, else
    STORAGE_BYTES_PER_S_PER_DEVICE x devices)."""
    bw = devices * STORAGE_BYTES_PER_S_PER_DEVICE if storage_bytes_per_s is None \
        else storage_bytes_per_s
    return ckpt_bytes / bw


def mean_time_between_interruptions_s(devices, rate_per_device_hour: float):
    """Seconds between job interruptions: 1 / (rate x devices), the job failing with any of
    its devices."""
    return SECONDS_PER_HOUR / (rate_per_device_hour * devices)


def checkpoint_interval_s(write_s, mtbi_s):
    """Daly's (2006) first-order optimum sqrt(2 delta M) - delta, Young's (1974) sqrt(2 delta M)
    less the write itself; at least the write time."""
    return _at_least((2 * write_s * mtbi_s) ** 0.5 - write_s, write_s)


def goodput_fraction(write_s, interval_s, restart_s: float, mtbi_s):
    """Useful fraction of wall-clock time: tau / (tau + delta) of the time is spent computing,
    and each interruption (every M seconds) loses the restart plus half a checkpoint period
    of work: (1 - (R + (tau + delta) / 2) / M). Floored at MIN_GOODPUT."""
    period = interval_s + write_s
    g = interval_s / period * (1 - (restart_s + period / 2) / mtbi_s)
    return _at_least(g, MIN_GOODPUT)


@frozen
class GoodputCase:
    """One case of the failure model (seconds, fractions)."""

    rate_per_device_hour: float
    restart_s: float
    write_s: float
    mtbi_s: float
    interval_s: float
    goodput: float


def goodput_case(devices, ckpt_bytes: float, rate_per_device_hour: float, restart_s: float,
                 storage_bytes_per_s=None) -> GoodputCase:
    """The failure model for one (rate, restart) case on ``devices`` (numbers or arrays)."""
    write = checkpoint_write_s(ckpt_bytes, devices, storage_bytes_per_s)
    m = mean_time_between_interruptions_s(devices, rate_per_device_hour)
    tau = checkpoint_interval_s(write, m)
    return GoodputCase(rate_per_device_hour, restart_s, write, m, tau,
                       goodput_fraction(write, tau, restart_s, m))


def goodput_cases(devices, ckpt_bytes: float, rates=RATE_CASES, restarts=RESTART_S_CASES,
                  storage_bytes_per_s=None) -> tuple[GoodputCase, GoodputCase, GoodputCase]:
    """(low, expected, high) goodput: the high rate with the long restart, the expected pair,
    the low rate with the short restart (``rates`` and ``restarts`` run low to high)."""
    return tuple(goodput_case(devices, ckpt_bytes, r, s, storage_bytes_per_s)
                 for r, s in zip(rates[::-1], restarts[::-1]))  # type: ignore[return-value]


def with_stalls(goodput, stall_fraction: float):
    """Goodput after stalls: the failure model's useful fraction x (1 - the stalled share),
    floored at MIN_GOODPUT like the failure model's."""
    return _at_least(goodput * (1.0 - stall_fraction), MIN_GOODPUT)


# Stalls: wall-clock time lost outside failures -- stragglers and slow nodes, data-loading and
# evaluation pauses, hangs until a timeout fires, batch ramp-up -- as a share of the run's wall
# clock, best / expected / worst.
# Expected: set on Llama 3 405B (the backtest's llama3.1-405b run; its device-hours are not
# used): ">90% effective training time", useful over elapsed with every loss included (Dubey
# et al. 2024 §3.3.4), leaves at most 1 - 0.90 / 0.917 = 1.9% after the failure model's
# expected 0.917 on its 16,384 GPUs; 1.5% is taken. MegaScale's ">90%" on >10,000 GPUs (Jiang
# et al. 2024) is consistent with it; ByteRobust's 97% ETTR on 9,600 GPUs (2025) is above
# the failure model there, so a mature fleet can do better than this model says.
# Worst: GLM-130B (Zeng et al. 2023, arXiv 2210.02414) ran May 6 - July 3, 2022 (58 days) on
# 768 A100-40GB, where its published 32.5% MFU on 400B tokens (130B parameters, 70 layers,
# d_model 12288, 2,048-token sequences; PaLM's count with attention) gives 47.6 days. Of the
# rest, the failure model's own worst case at that scale accounts for some; the remainder,
# net of it, is the worst stall share (about 15.5%). Best: none.
GLM130B_DAYS = 58.0
GLM130B_IDEAL_DAYS = ((6 * 130e9 + 12 * 70 * 12288 * 2048) * 400e9
                      / (768 * 312e12 * 0.325) / 86_400)
_GLM130B_FAILURE_WORST = goodput_cases(768, checkpoint_bytes(130e9, 2, 12))[0].goodput
STALL_CASES = (0.0, 0.015,
               1 - GLM130B_IDEAL_DAYS / GLM130B_DAYS / _GLM130B_FAILURE_WORST)
STALL_SOURCE = (
    "wall clock lost outside failures (stragglers, data and evaluation pauses, hangs, batch "
    "ramp-up): none at best; 1.5% expected, set on Llama 3 405B's >90% effective training "
    "time less the failure model's 8.3% at 16K GPUs (Dubey et al. 2024 §3.3.4; MegaScale's "
    ">90% is consistent); at worst GLM-130B's: 58 days on 768 A100 against 47.6 at its "
    "published 32.5% MFU, net of the failure model's worst case there (Zeng et al. 2023)")


def interruptions(device_hours, rate_per_device_hour: float):
    """Expected job interruptions over the run: rate x device-hours (wall-clock)."""
    return rate_per_device_hour * device_hours
