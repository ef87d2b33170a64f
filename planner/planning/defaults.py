"""Defaults for inputs a user may leave out, each returned with the Assumption that records it."""

from __future__ import annotations

import math

from planner.results import Assumption

CHINCHILLA_TOKENS_PER_PARAM = 20.0
BATCH_TOKENS = 4 * 2**20  # Llama 3 pre-training started at 4M tokens per batch
MAX_DEFAULT_SEQ_LEN = 8192

# The plan `planner estimate` runs with no options: the worked example of formulas.md §8
# at a quickstart scale (FSDP, one micro-batch per GPU).
BUILTIN_PLAN = {
    "model": "llama3-8b", "hardware": "h100-sxm", "devices": 64, "tokens": 1e12,
    "seq_len": 8192, "global_batch": 512, "zero": "3",
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


def default_global_batch(seq_len: int, dp: int, micro_batch: int) -> tuple[int, Assumption]:
    """About 4M tokens per step, rounded up to a multiple of dp x micro-batch."""
    unit = dp * micro_batch
    b = unit * max(1, math.ceil(BATCH_TOKENS / seq_len / unit))
    return b, _note("global_batch_size", b, "sequences",
                    "about 4M tokens per step (Llama 3 §3.4.1 started at 4M), rounded to a "
                    "multiple of dp x micro-batch")


def default_devices(devices_per_node: int) -> tuple[int, Assumption]:
    """One node of the chosen hardware."""
    return devices_per_node, _note("devices", devices_per_node, "devices",
                                   "one node of the chosen hardware")


def default_hardware() -> tuple[str, Assumption]:
    return "h100-sxm", _note("hardware", "h100-sxm", "", "planner default accelerator")


def builtin_plan_note() -> Assumption:
    return _note("plan", "built-in default", "",
                 "no --model given: llama3-8b on 64 x h100-sxm, 1T tokens, 8K context, "
                 "FSDP (ZeRO-3)")
