"""Shared fixtures: presets and profiles by name, a CliRunner."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from planner.catalog.catalog import load_hardware, load_model


@pytest.fixture
def model():
    return load_model


@pytest.fixture
def hardware():
    return load_hardware


@pytest.fixture
def runner():
    return CliRunner()
