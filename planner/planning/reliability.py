"""The goodput model's inputs for one request (failures and stalls), each a user value or a
sourced default, and the Reliability block `estimate` prints (docs/assumptions.md, Goodput)."""

from __future__ import annotations

from functools import lru_cache

from planner.estimators import goodput as gp
from planner.estimators.finetune_memory import finetune_checkpoint_bytes
from planner.estimators.model_state import state_bytes_per_param
from planner.results import Assumption, Reliability
from planner.specs import Assumptions, ModelSpec, TrainingSpec
from planner.units import GB, SECONDS_PER_HOUR

FAILURE_MODEL_SOURCE = (
    "failure model (docs/formulas.md §7.2): interruptions per device-hour x devices, a restart "
    "and half a checkpoint period lost per interruption, the Young/Daly interval between "
    "checkpoints; x (1 - stall_fraction) for time lost outside failures")


def checkpoint_bytes_for(model: ModelSpec, params_total: float, training: TrainingSpec) -> float:
    """One checkpoint's bytes: what trains, its weights + optimizer state. Pre-training and
    full fine-tuning train every parameter; a partial, LoRA or QLoRA fine-tune saves its
    trainable weights only, the frozen base being on disk already (finetune_checkpoint_bytes)."""
    if training.finetune is not None and training.finetune.mode != "full":
        return finetune_checkpoint_bytes(model, training)
    w, _, o = state_bytes_per_param(training.optimizer, training.precision)
    return gp.checkpoint_bytes(params_total, w, o)


def failure_cases(user: Assumptions) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(interruption rates, restart seconds), each low to high: the user's (the same in every
    case) or the defaults; a spot price tier adds its preemptions."""
    rates = gp.RATE_CASES if user.failure_rate_per_device_hour is None else \
        (user.failure_rate_per_device_hour,) * 3
    if user.price_tier == "spot":
        rates = tuple(r + s for r, s in zip(rates, gp.SPOT_PREEMPTION_CASES))
    restarts = gp.RESTART_S_CASES if user.restart_minutes is None else \
        (user.restart_minutes * 60.0,) * 3
    return rates, restarts


def stall_cases(user: Assumptions) -> tuple[float, float, float]:
    """Stalled share of the wall clock, low to high: the user's (every case) or the defaults."""
    return gp.STALL_CASES if user.stall_fraction is None else (user.stall_fraction,) * 3


def _storage(user: Assumptions) -> float | None:
    return None if user.storage_gb_per_s is None else user.storage_gb_per_s * GB


def model_goodput(devices, user: Assumptions, ckpt_bytes: float) -> tuple:
    """(low, expected, high) goodput from the failure model and the stalls (numbers or arrays
    of devices): the worst case takes the most stalls, the best the fewest."""
    if type(devices) is int:  # one plan: the same few inputs recur across estimates
        return _model_goodput_at(devices, user, ckpt_bytes)
    return _goodput(devices, user, ckpt_bytes)


def _goodput(devices, user: Assumptions, ckpt_bytes: float) -> tuple:
    rates, restarts = failure_cases(user)
    cases = gp.goodput_cases(devices, ckpt_bytes, rates, restarts, _storage(user))
    return tuple(gp.with_stalls(c.goodput, s) for c, s in zip(cases, stall_cases(user)[::-1]))


@lru_cache(maxsize=1024)
def _model_goodput_at(devices: int, user: Assumptions, ckpt_bytes: float) -> tuple:
    return _goodput(devices, user, ckpt_bytes)


def reliability(devices: int, user: Assumptions, ckpt_bytes: float,
                goodput_expected: float, compute_hours: float) -> tuple[Reliability, list]:
    """The expected case's checkpoint, interval and interruptions, and the assumptions behind
    them (rates, restart, storage; listed even when the user fixed goodput)."""
    rates, restarts, bw, c, notes = _expected_case(devices, user, ckpt_bytes)
    stalls = stall_cases(user)
    wall_h = compute_hours / goodput_expected
    return Reliability(
        checkpoint_bytes=ckpt_bytes, checkpoint_write_s=c.write_s, storage_gb_per_s=bw / GB,
        checkpoint_interval_s=c.interval_s, interruptions_per_device_hour=rates[1],
        mean_time_between_interruptions_h=c.mtbi_s / SECONDS_PER_HOUR,
        restart_s=restarts[1], interruptions=gp.interruptions(wall_h * devices, rates[1]),
        model_goodput=c.goodput, stall_fraction=stalls[1], stall_range=[stalls[0], stalls[2]],
        goodput=gp.with_stalls(c.goodput, stalls[1])), list(notes)


@lru_cache(maxsize=1024)
def _expected_case(devices: int, user: Assumptions, ckpt_bytes: float) -> tuple:
    """(rates, restarts, storage bytes/s, the expected GoodputCase, the assumptions)."""
    rates, restarts = failure_cases(user)
    storage = _storage(user)
    c = gp.goodput_case(devices, ckpt_bytes, rates[1], restarts[1], storage)
    bw = storage if storage is not None else devices * gp.STORAGE_BYTES_PER_S_PER_DEVICE
    user_rate = user.failure_rate_per_device_hour is not None
    spot = " + " + gp.SPOT_SOURCE if user.price_tier == "spot" else ""
    notes = (
        Assumption("failure_rate_per_device_hour", "/".join(f"{r:.3g}" for r in rates),
                   "low/expected/high per device-hour", ("set by user" if user_rate else
                                                         gp.RATE_SOURCE) + spot, not user_rate),
        Assumption("restart_minutes", "/".join(f"{s / 60:g}" for s in restarts),
                   "low/expected/high", "set by user" if user.restart_minutes is not None
                   else gp.RESTART_SOURCE, user.restart_minutes is None),
        Assumption("storage_gb_per_s", bw / GB, "GB/s aggregate",
                   "set by user" if storage is not None else gp.STORAGE_SOURCE,
                   storage is None),
        Assumption("stall_fraction", "/".join(f"{x:.3g}" for x in stall_cases(user)),
                   "low/expected/high share of wall clock",
                   "set by user" if user.stall_fraction is not None else gp.STALL_SOURCE,
                   user.stall_fraction is None),
    )
    return rates, restarts, bw, c, notes


def goodput_for_compute(devices: int, useful_flops: float, user: Assumptions) -> float:
    """Expected goodput when only the compute is known (`planner budget` without a model): the
    failure model with the checkpoint of the Chinchilla-optimal model for that compute
    (C = 6ND, D = 20N, so N = sqrt(C / 120); AdamW mixed precision, 14 bytes a parameter)."""
    params = (useful_flops / 120.0) ** 0.5
    return model_goodput(devices, user, gp.checkpoint_bytes(params, 2, 12))[1]
