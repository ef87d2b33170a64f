"""The efficiency cases of a range, shared by `estimate` and `--confidence high` planning."""

from __future__ import annotations

from planner.results import QuantityRanges

# Peak memory came within 2% of the prediction for 1-3B models on one H100
# (docs/validation/2026-11-23-h100.md); multi-device layouts are not measured: +-5% assumed.
MEMORY_SPREAD = 0.05
MEMORY_SOURCE = ("+-5% assumed: peak memory within 2% on one H100 for 1-3B models "
                 "(docs/validation/2026-11-23-h100.md); multi-device layouts not measured")

WORST_CASE_RULE = (
    "worst case: the prediction x the profile's relative low; best case: the prediction x the "
    "relative high; a defaulted batch and the tied layouts widen both (range_batch_spread, "
    "range_layout_spread)")


def worst_efficiency(predicted, low: float, expected: float):
    """predicted x low / expected, for numbers and arrays alike: the profile's relative spread.

    An earlier rule also floored it at the profile's published low; that floor was chosen
    after seeing the backtest (it put MPT-7B inside its range) and is not what the performance
    model's measured error asks for (within 10% on the A100 rows of the throughput table in
    docs/validation.md, inside the A100 profile's relative spread of 22%), so it is gone."""
    return predicted * low / expected


def quantity_ranges(effs: tuple[float, float, float], mfu_expected: float, step_s: float,
                    memory_bytes: float) -> QuantityRanges:
    """MFU and step time scale with the efficiency cases (low, expected, high); memory by
    MEMORY_SPREAD. Every list runs best case, expected, worst case (the table's low column is
    the best case)."""
    lo, exp, hi = effs
    return QuantityRanges(
        mfu=[mfu_expected * hi / exp, mfu_expected, mfu_expected * lo / exp],
        step_time_s=[step_s * exp / hi, step_s, step_s * exp / lo],
        memory_bytes=[memory_bytes * (1 - MEMORY_SPREAD), memory_bytes,
                      memory_bytes * (1 + MEMORY_SPREAD)],
        memory_source=MEMORY_SOURCE)
