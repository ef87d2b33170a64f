"""The shipped JSON Schemas match the pydantic specs they are generated from."""

import json

import pytest

from planner.catalog.catalog import PRESETS_DIR
from planner.catalog.schema import SCHEMA_DIR, SCHEMAS, schema_text


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_shipped_schema_is_current(name):
    assert (SCHEMA_DIR / name).read_text() == schema_text(SCHEMAS[name]), (
        "stale schema: run `python -m planner.catalog.schema`")


def test_schema_rejects_unknown_keys():
    schema = json.loads((SCHEMA_DIR / "hardware_profile.schema.json").read_text())
    assert schema["additionalProperties"] is False
    assert "tdp_w" in schema["required"]


@pytest.mark.parametrize("path", sorted(PRESETS_DIR.glob("*.yaml")))
def test_presets_reference_the_model_schema(path):
    assert path.read_text().startswith("# yaml-language-server: $schema=../schema/model.schema.json")
