"""Quantity parsing and formatting."""

import pytest

from planner.units import fmt_bytes, fmt_count, parse_count


@pytest.mark.parametrize("text,value", [("15T", 15e12), ("300B", 300e9), ("2e12", 2e12),
                                        ("1.5M", 1.5e6), ("10k", 1e4), ("1_000", 1000.0),
                                        (" 7 G ", 7e9), (42, 42.0)])
def test_parse_count(text, value):
    assert parse_count(text) == value


@pytest.mark.parametrize("bad", ["-5", "0", "abc", "15X", "", "nan", "1e999"])
def test_parse_count_rejects(bad):
    with pytest.raises(ValueError):
        parse_count(bad, "--tokens")


def test_formatting():
    assert fmt_count(70_553_706_496) == "70.6B"
    assert fmt_count(15e12) == "15T"
    assert fmt_bytes(80 * 2**30) == "80.0 GiB"
