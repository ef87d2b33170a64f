"""Input specifications: frozen pydantic models that reject unknown keys."""

from planner.specs.hardware import Figure, HardwareProfile, PriceQuote
from planner.specs.model import MLASpec, ModelSpec, MoESpec
from planner.specs.training import Assumptions, ParallelismSpec, TrainingSpec

__all__ = [
    "Assumptions",
    "Figure",
    "HardwareProfile",
    "MLASpec",
    "ModelSpec",
    "MoESpec",
    "ParallelismSpec",
    "PriceQuote",
    "TrainingSpec",
]
