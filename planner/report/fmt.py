"""Human formatting of money, energy, carbon, durations, sizes and shard groups (shared by
all reports)."""

from __future__ import annotations

from planner.units import GIB, fmt_count


def gib(b: float) -> str:
    return f"{b / GIB:.1f} GiB"


def money(x: float) -> str:
    return f"${fmt_count(x)}" if x >= 1e3 else f"${x:,.2f}"


def energy(kwh: float | None) -> str:
    """'12.3 GWh', '4.27 MWh', '3.1 kWh', '0.00427 Wh'; 'n/a' for None."""
    if kwh is None:
        return "n/a"
    if abs(kwh) >= 1e6:
        return f"{kwh / 1e6:.3g} GWh"
    if abs(kwh) >= 1e3:
        return f"{kwh / 1e3:.3g} MWh"
    if abs(kwh) >= 1 or kwh == 0:
        return f"{kwh:.3g} kWh"
    return f"{kwh * 1e3:.3g} Wh"


def carbon(kg: float | None) -> str:
    """'1,234.5 t', '3.4 kg', '0.239 g'; 'n/a' for None."""
    if kg is None:
        return "n/a"
    if abs(kg) >= 1e3:
        return f"{kg / 1e3:,.1f} t"
    if abs(kg) >= 1 or kg == 0:
        return f"{kg:,.1f} kg"
    return f"{kg * 1e3:.3g} g"


def duration(days: float) -> str:
    if days >= 2:
        return f"{days:,.0f} days" if days >= 10 else f"{days:,.1f} days"
    hours = days * 24
    return f"{hours:.1f} hours" if hours >= 1 else f"{hours * 60:.0f} minutes"


def plural(n: int, word: str) -> str:
    return f"{n:,} {word}" + ("" if n == 1 else "s")


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
