"""Find and load shipped and user data: model presets and hardware profiles.

Shipped data lives in ``hardware_profiles/`` beside the package in a source checkout, and
inside the wheel at ``planner/_shipped/`` after ``pip install .``. Users add profiles from a
directory with ``--profiles-dir`` or ``PLANNER_PROFILES_DIR`` (os.pathsep-separated); a user
profile with the same name replaces the shipped one.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from planner.catalog.yamlio import load_spec
from planner.errors import SpecError, UnknownNameError
from planner.specs.hardware import HardwareProfile
from planner.specs.model import ModelSpec

PROFILES_ENV = "PLANNER_PROFILES_DIR"
_PKG = Path(__file__).resolve().parent.parent
PRESETS_DIR = _PKG / "data" / "models"


@lru_cache(maxsize=8)
def shipped_dir(name: str) -> Path:
    """Directory of shipped data ('hardware_profiles' or 'scenarios'), wheel or checkout."""
    for candidate in (_PKG / "_shipped" / name, _PKG.parent / name):
        if candidate.is_dir():
            return candidate
    raise SpecError(f"shipped data directory '{name}' is missing from this installation")


def _profile_dirs(extra: tuple[str, ...]) -> list[Path]:
    dirs = [shipped_dir("hardware_profiles")]
    env = os.environ.get(PROFILES_ENV, "")
    for d in [*env.split(os.pathsep), *extra]:
        if d:
            p = Path(d).expanduser()
            if not p.is_dir():
                raise SpecError(f"profiles directory '{d}' does not exist")
            dirs.append(p)
    return dirs


def _listing(d: Path, pattern: str) -> dict[str, Path]:
    """The sorted files of a directory, re-read only when the directory changes (its
    mtime), so a long-lived process (the Python API) does not glob on every call."""
    try:
        mtime = os.stat(d).st_mtime_ns  # os.stat: no Path parsing on the hot path
    except OSError:
        return {}
    return _listing_at(d, pattern, mtime)


@lru_cache(maxsize=64)
def _listing_at(d: Path, pattern: str, mtime_ns: int) -> dict[str, Path]:
    return {p.stem: p for p in sorted(d.glob(pattern))}


def hardware_paths(extra_dirs: tuple[str, ...] = ()) -> dict[str, Path]:
    """Profile name -> YAML path; later directories override earlier ones."""
    found: dict[str, Path] = {}
    for d in _profile_dirs(extra_dirs):
        found.update(_listing(d, "*.y*ml"))
    return found


@lru_cache(maxsize=128)
def _load_profile(path: Path) -> HardwareProfile:
    hw = load_spec(HardwareProfile, path)
    if hw.name != path.stem:
        raise SpecError(f"{path}: name '{hw.name}' must match the file name '{path.stem}'")
    return hw


def load_hardware(name: str, extra_dirs: tuple[str, ...] = ()) -> HardwareProfile:
    """A hardware profile by name (or by path to a YAML file)."""
    if name.endswith((".yaml", ".yml")) and Path(name).is_file():
        return _load_profile(Path(name).resolve())
    paths = hardware_paths(extra_dirs)
    if name not in paths:
        raise UnknownNameError("hardware", name, paths)
    return _load_profile(paths[name])


def preset_paths() -> dict[str, Path]:
    """Preset name -> YAML path."""
    return dict(_listing(PRESETS_DIR, "*.yaml"))


@lru_cache(maxsize=64)
def _load_model_file(path: Path) -> ModelSpec:
    if path.suffix == ".json":
        from planner.catalog.hf_config import load_hf_config
        return load_hf_config(path)
    return load_spec(ModelSpec, path)


def load_model(name_or_path: str) -> ModelSpec:
    """A model by preset name, model YAML file, or Hugging Face config.json (file or dir).
    A file of that name wins over a preset of the same name."""
    if not os.path.exists(os.path.expanduser(name_or_path)):  # one stat for a preset name
        presets = _listing(PRESETS_DIR, "*.yaml")  # read only: no copy
        if name_or_path in presets:
            return _load_model_file(presets[name_or_path])
    p = Path(name_or_path).expanduser()
    if p.is_dir() and (p / "config.json").is_file():
        p = p / "config.json"
    if p.is_file():
        return _load_model_file(p.resolve())
    if p.suffix in (".json", ".yaml", ".yml") or os.sep in name_or_path:
        raise SpecError(f"model file '{name_or_path}' does not exist")
    presets = preset_paths()
    if name_or_path not in presets:
        raise UnknownNameError("model", name_or_path, presets)
    return _load_model_file(presets[name_or_path])
