"""The resolver's sharing of validated specs (benchmarks/estimate_speed.py measures the gain)."""

import pytest

from planner.errors import SpecError
from planner.planning.resolve import _validate
from planner.specs import Assumptions, ParallelismSpec, TrainingSpec


def test_identical_plain_inputs_share_one_validated_spec():
    a = _validate(ParallelismSpec, {"devices": 8, "tp": 2}, "layout")
    assert _validate(ParallelismSpec, {"tp": 2, "devices": 8}, "layout") is a
    assert _validate(ParallelismSpec, {"devices": 8, "tp": 4}, "layout").tp == 4
    assert _validate(Assumptions, {}, "assumptions") is _validate(Assumptions, {}, "a")
    assert _validate(Assumptions, {}, "a") is not _validate(TrainingSpec, {
        "tokens": 1e9, "seq_len": 8, "global_batch_size": 8}, "training")


def test_a_bool_is_not_taken_for_the_number_it_equals():
    assert _validate(ParallelismSpec, {"devices": 8, "tp": 1}, "layout").tp == 1
    with pytest.raises(SpecError, match="--tp: must be a whole number, not true"):
        _validate(ParallelismSpec, {"devices": 8, "tp": True}, "layout")  # True == 1


def test_unhashable_inputs_are_validated_each_time():
    eff = {"low": 0.3, "expected": 0.4, "high": 0.5, "source": "mine"}
    a = _validate(Assumptions, {"efficiency": eff}, "assumptions")
    b = _validate(Assumptions, {"efficiency": dict(eff)}, "assumptions")
    assert a == b and a is not b
    with pytest.raises(SpecError):
        _validate(Assumptions, {"efficiency": {**eff, "low": 0.9}}, "assumptions")
