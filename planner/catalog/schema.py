"""JSON Schemas for the YAML inputs, generated from the pydantic specs.

Editors validate ``hardware_profiles/*.yaml`` and model YAML files against these through the
``# yaml-language-server: $schema=...`` line at the top of each file. Regenerate after changing
a spec:  python -m planner.catalog.schema   (tests/test_schema.py fails when they are stale).
"""

from __future__ import annotations

import json
from pathlib import Path

from planner.fileio import write_text_atomic
from planner.specs import HardwareProfile, ModelSpec
from planner.specs.scenario import Scenario

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "data" / "schema"
SCHEMAS = {"hardware_profile.schema.json": HardwareProfile, "model.schema.json": ModelSpec,
           "scenario.schema.json": Scenario}


def schema_text(model) -> str:
    """The JSON Schema of a spec, as shipped (stable key order, trailing newline)."""
    schema = model.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def main() -> None:
    for name, model in SCHEMAS.items():
        path = SCHEMA_DIR / name
        write_text_atomic(path, schema_text(model))
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
