"""Shared fixtures: presets and profiles by name, a CliRunner."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from planner.catalog.catalog import load_hardware, load_model


@pytest.fixture(autouse=True)
def _isolated_user_files(tmp_path, monkeypatch):
    """Never read or write the user's real calibration file, run ledger or parse cache."""
    monkeypatch.setenv("PLANNER_CALIBRATION", str(tmp_path / "calibration.json"))
    monkeypatch.setenv("PLANNER_LEDGER", str(tmp_path / "runs.sqlite"))
    monkeypatch.setenv("PLANNER_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture
def model():
    return load_model


@pytest.fixture
def hardware():
    return load_hardware


@pytest.fixture
def runner():
    return CliRunner()
