"""The sourced rules for inputs a user may leave out; each returns its value with the
Assumption that records it. `resolve` is the only caller, so every command fills a default
the same way."""

from __future__ import annotations

import math

from planner.results import Assumption

CHINCHILLA_TOKENS_PER_PARAM = 20.0
MAX_DEFAULT_SEQ_LEN = 8192
MEBI = 2**20

# Tokens per optimizer step in published pre-training runs, by model size. Between anchors the
# rule interpolates log-log; outside them it holds the end value.
BATCH_ANCHORS = (
    (125e6, 0.5 * MEBI, "GPT-3 Small 125M: 0.5M tokens (Brown et al. 2020, Table 2.1)"),
    (1.3e9, 1.0 * MEBI, "GPT-3 XL 1.3B: 1M (Brown et al. 2020, Table 2.1)"),
    (7e9, 4.0 * MEBI, "Llama 2 7B: 4M (Touvron et al. 2023, §2.2)"),
    (70e9, 4.0 * MEBI, "Llama 2 70B: 4M (Touvron et al. 2023, §2.2)"),
    (405e9, 16.0 * MEBI, "Llama 3 405B: 16M for most of its tokens (Dubey et al. 2024, "
                         "§3.4.1: 4M, 8M after 252M tokens, 16M after 2.87T)"),
)
BATCH_RULE_SOURCE = (
    "tokens per step of published runs of this size, interpolated log-log: "
    + "; ".join(a[2] for a in BATCH_ANCHORS))

# The plan `planner estimate` runs with no options: the `quickstart` scenario's first option.
BUILTIN_PLAN = {
    "model": "llama3-8b", "hardware": "h100-sxm", "devices": 64, "tokens": 1e12,
    "seq_len": 8192, "global_batch_size": 512, "region": "aws:us-east-1",
}


def _note(name: str, value, unit: str, source: str) -> Assumption:
    return Assumption(name=name, value=value, unit=unit, source=source, defaulted=True)


def default_tokens(params_total: int) -> tuple[float, Assumption]:
    """Compute-optimal tokens: 20 per parameter (Hoffmann et al. 2022, Table 3)."""
    tokens = CHINCHILLA_TOKENS_PER_PARAM * params_total
    return tokens, _note("tokens", tokens, "tokens",
                         "20 tokens per parameter, Chinchilla (Hoffmann et al. 2022, Table 3)")


def default_seq_len(max_seq_len: int) -> tuple[int, Assumption]:
    """The model's context length, capped at 8192 (long-context stages are separate runs)."""
    s = min(max_seq_len, MAX_DEFAULT_SEQ_LEN)
    return s, _note("seq_len", s, "tokens",
                    f"model max_seq_len capped at {MAX_DEFAULT_SEQ_LEN} (Llama 3 pre-trained at "
                    "8K before a separate long-context stage, Dubey et al. 2024 §3.4)")


def batch_tokens(params_total: float) -> float:
    """Tokens per step by model size: log-log interpolation through BATCH_ANCHORS."""
    pts = BATCH_ANCHORS
    if params_total <= pts[0][0]:
        return pts[0][1]
    for (n0, b0, _), (n1, b1, _) in zip(pts, pts[1:]):
        if params_total <= n1:
            f = math.log(params_total / n0) / math.log(n1 / n0)
            return b0 * (b1 / b0) ** f
    return pts[-1][1]


def default_global_batch(params_total: float, seq_len: int) -> tuple[int, Assumption]:
    """Sequences per step: batch_tokens(params) / seq_len, at least one. A layout rounds it to
    a multiple of dp x micro-batch (`round_batch`)."""
    b = max(1, round(batch_tokens(params_total) / seq_len))
    return b, _note("global_batch_size", b, "sequences", BATCH_RULE_SOURCE)


def round_batch(target, unit):
    """The default batch on one layout: the nearest multiple of dp x micro-batch (at least
    one). Works on numbers and numpy arrays alike (the search and `estimate` share it)."""
    rounded = (target / unit).round() * unit if hasattr(target / unit, "round") else \
        round(target / unit) * unit
    return rounded + (unit - rounded) * (rounded < unit)


def batch_warning(batch: int, seq_len: int) -> str:
    return (f"--global-batch not given: {batch:,} sequences x {seq_len:,} = "
            f"{batch * seq_len / 1e6:.2f}M tokens per step, by the published-runs rule "
            "(docs/assumptions.md); the batch moves large-cluster answers, so give your own")


def default_devices(devices_per_node: int) -> tuple[int, Assumption]:
    """One node of the chosen hardware."""
    return devices_per_node, _note("devices", devices_per_node, "devices",
                                   "one node of the chosen hardware")


def default_hardware() -> tuple[str, Assumption]:
    return "h100-sxm", _note("hardware", "h100-sxm", "", "planner default accelerator")


def builtin_plan_note() -> Assumption:
    return _note("plan", "built-in default", "",
                 "no --model given: llama3-8b on 64 x h100-sxm, 1T tokens, 8K context, 512 "
                 "sequences per step in aws:us-east-1 (the `quickstart` scenario)")
