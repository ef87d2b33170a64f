"""The efficiency cases of a range, shared by `estimate` and `--confidence high` planning."""

from __future__ import annotations

WORST_CASE_RULE = (
    "worst case: the lower of the prediction x the profile's relative low and the profile's "
    "published low (a run can do as badly as the worst published run on the hardware, "
    "whatever the model predicts); best case: the prediction x the relative high")


def worst_efficiency(predicted, low: float, expected: float):
    """min(predicted x low / expected, low), for numbers and arrays alike."""
    rel = predicted * low / expected
    return rel * (rel <= low) + low * (rel > low)
